"""tokenomy twin: a GPU-free, OpenAI-compatible stand-in server that runs the simulator's scheduler in real time."""
