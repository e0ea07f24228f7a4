"""`tokenomy bench`: measure any OpenAI-compatible endpoint in the units of docs/design.md.

client (one streamed request, SSE parsing) → load (arrival schedules, closed loop) → metrics
(summary shared with `simulate`) → search (highest rate meeting an SLO) → economics ($/Mtok,
MBU/MFU, the cost model's prediction beside the measurement) → measurements (rows for calibrate).
"""
