"""The shipped evaluation set (prompts with machine-checkable answers) and its checker."""
