"""The Space layer: what the Gradio app needs beyond the core package, one idea per module.

- :mod:`.offer`: which models are offered; :mod:`.cache`: the models loaded, ZeroGPU's preload; :mod:`.hub_ids`:
  typed Hub ids' downloads, within limits;
- :mod:`.timing`: what a call costs and the estimates; :mod:`.estimate`: their arithmetic;
- :mod:`.slot`: the GPU time a run asks for; :mod:`.zerogpu`: ZeroGPU's figures and quota;
- :mod:`.requests`: a run's request; :mod:`.runner`: running it, Stop; :mod:`.service`: all of these for one server;
- :mod:`.streams`: the chain from a request to the page and the API; :mod:`.files`: result files;
- :mod:`.pictures`: what the page shows; :mod:`.page`: the page's parts; :mod:`.aot`: ahead-of-time compilation;
- :mod:`.errors`: what a visitor is told; :mod:`.bench`: the estimate against the wait, a benchmark command;
- :mod:`.limits`: what one request may ask; :mod:`.editor`: the image inputs' guards; :mod:`.clients`: whether a
  run's client still reads it; :mod:`.visitors`: one run per visitor;
- :mod:`.wire`: the page's wire protocol, as a script speaks it; :mod:`.hostile`: the public-link benchmark.

The core (``repaint``'s other modules) never imports it. Its public names are importable from here too; patch a
setting in the module that defines it (``repaint.space.streams.PREVIEW_INTERVAL_S``), not here."""

from __future__ import annotations

from .cache import AOT_ENV, ModelCache
from .errors import (
    ECHO_MAX,
    GPU_FAILED,
    OUT_OF_MEMORY,
    ServeError,
    SlotSpent,
    Stopped,
    echo,
    gpu_error,
    visible,
)
from .estimate import (
    BATCH_ROWS_TIMED,
    CHEAP_CALL_S,
    EXTRA_PIXELS_MAX,
    EXTRA_S,
    GPU_BATCH_COST,
    GPU_MARGIN_S,
    PAGE_S,
    PRIOR_CALLS,
    RUN_CALLS_MAX,
    TIMING_BUDGET_S,
    TIMING_CALLS,
    batch_cost,
    call_interval,
    fmt_seconds,
)
from .files import PNG_LEVEL, RESULTS_DIR, RESULTS_MAX_AGE_S, new_results_dir, save_results, sweep_results
from .offer import HUB_ID_RE, is_hub_id, model_choices, model_table, offered_models
from .requests import (
    COMPARE_NEEDS_R,
    SIZES,
    Checked,
    Finished,
    Request,
    check_compare,
    run_rows,
    uploaded_path,
)
from .runner import ANIMATION_FRAMES, SLOT_RESERVE_S, TICK_INTERVAL_S, WORKER_JOIN_S, Done, Runner, Spent, Tick
from .service import Service, form_settings, leave_a_core_to_the_server
from .slot import GPU_CAP_S, Slot
from .streams import (
    NOTHING_TO_STOP,
    PREVIEW_INTERVAL_S,
    STOPPING,
    Progress,
    Status,
    api_stream,
    page_results,
    page_stream,
    stopped_text,
    stream,
    until_stopped,
)
from .timing import Timing
from .zerogpu import (
    ZEROGPU_CALL_S,
    ZEROGPU_FACTOR_MAX,
    ZEROGPU_GUESS_MARGIN,
    ZEROGPU_MIN_CALL_S,
    ZEROGPU_QUOTA_S,
    ZEROGPU_SLOT_S,
    ZEROGPU_TASK_MAX_S,
    ZEROGPU_TFLOPS,
    gpu_seconds_text,
    zerogpu_duration_factor,
    zerogpu_guess,
)

__all__ = [
    "ANIMATION_FRAMES",
    "AOT_ENV",
    "BATCH_ROWS_TIMED",
    "ECHO_MAX",
    "CHEAP_CALL_S",
    "COMPARE_NEEDS_R",
    "Checked",
    "Done",
    "EXTRA_PIXELS_MAX",
    "EXTRA_S",
    "Finished",
    "GPU_BATCH_COST",
    "GPU_CAP_S",
    "GPU_FAILED",
    "GPU_MARGIN_S",
    "HUB_ID_RE",
    "ModelCache",
    "NOTHING_TO_STOP",
    "OUT_OF_MEMORY",
    "PAGE_S",
    "PNG_LEVEL",
    "PREVIEW_INTERVAL_S",
    "PRIOR_CALLS",
    "Progress",
    "RESULTS_DIR",
    "RESULTS_MAX_AGE_S",
    "RUN_CALLS_MAX",
    "Request",
    "Runner",
    "SIZES",
    "SLOT_RESERVE_S",
    "STOPPING",
    "ServeError",
    "Service",
    "Slot",
    "SlotSpent",
    "Spent",
    "Status",
    "Stopped",
    "TICK_INTERVAL_S",
    "TIMING_BUDGET_S",
    "TIMING_CALLS",
    "Tick",
    "Timing",
    "WORKER_JOIN_S",
    "ZEROGPU_CALL_S",
    "ZEROGPU_FACTOR_MAX",
    "ZEROGPU_GUESS_MARGIN",
    "ZEROGPU_MIN_CALL_S",
    "ZEROGPU_QUOTA_S",
    "ZEROGPU_SLOT_S",
    "ZEROGPU_TASK_MAX_S",
    "ZEROGPU_TFLOPS",
    "api_stream",
    "batch_cost",
    "call_interval",
    "check_compare",
    "fmt_seconds",
    "form_settings",
    "echo",
    "gpu_error",
    "gpu_seconds_text",
    "is_hub_id",
    "leave_a_core_to_the_server",
    "model_choices",
    "model_table",
    "new_results_dir",
    "offered_models",
    "page_results",
    "page_stream",
    "run_rows",
    "save_results",
    "stopped_text",
    "stream",
    "sweep_results",
    "until_stopped",
    "uploaded_path",
    "visible",
    "zerogpu_duration_factor",
    "zerogpu_guess",
]
