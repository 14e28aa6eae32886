"""The coordinator's dashboard: jobs (live, with their timelines and loss curves), resources and chain health.

Server-side Jinja2 templates; the page polls small HTML fragments and two JSON series (short polling, no
reload) and plots them with uPlot, vendored from npm under `static/vendor/` (no CDN: it works offline).
Read-only: it shows what the coordinator's store, its executor's logs and the public result bundles hold,
never a key or a plaintext. It is served by the coordinator's API (`llmos coordinator run|serve`, at `/`)
and by `llmos demo --serve`, where one dashboard shows both of the demo's providers.
"""

from llmos_chain.dashboard.routes import mount_dashboard
from llmos_chain.dashboard.views import Provider

__all__ = ["Provider", "mount_dashboard"]
