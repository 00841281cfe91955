"""Interaction data: the record reader, raw-source preparation (WildFeedback, WildChat, HelpSteer2,
TL;DR) and the conversation rules that turn a logged conversation into (x, y, o) interactions."""
