"""Chat templates written for this project.

`QWEN3_STYLE` reproduces the structure of Qwen3's template that matters for SDPO: ChatML turns,
no default system prompt, and the thinking switch (with ``enable_thinking=False`` the generation
prompt ends with an empty think block). It lets tests exercise a Qwen3-style template offline.
"""

QWEN3_STYLE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)
