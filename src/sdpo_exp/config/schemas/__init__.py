"""Typed schemas behind every config group.

Each module registers its dataclasses with :func:`sdpo_exp.config.registry.schema`; the YAML option
files pull them in through ``defaults: [/schema/<group>/<name>@_here_]`` (polymorphic groups) or
are typed by the root schema (monomorphic groups), so that a misspelt key or a wrong type fails
when the config is composed.
"""
