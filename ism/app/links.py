"""A link to one exact run: its request in the page's query string (``?defense=…&example=…&attack=…&run=1``).

A link carries every field of ``RunRequest`` but the picture, which is named by its example (an uploaded picture
is never put in a link); a field a link leaves out is the defense's default. A link is read as any request is:
checked once, and one sentence for a link that names something this server does not have. Links written before
the field was called ``defense`` say ``dataset=``: they still open.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from ism.app.request import THREAT_SHORT, RunRequest, UserError

OLD_NAMES = {"dataset": "defense"}    # a link's older spelling of a field


def share_query(handler, req: RunRequest, run: bool = True) -> str:
    """The query string of a link that opens ``req`` on ``handler``'s defense (and runs it, with ``run``), or
    ``UserError`` for a picture that is not a shipped example: uploaded pictures are never put in links."""
    example = handler.example_of(req.file)
    if example is None:
        raise UserError("Only the example pictures can be shared in a link (an uploaded picture stays on your "
                        "computer): pick an example to share a run.")
    short = {v: k for k, v in THREAT_SHORT.items()}
    q = {"defense": handler.key, "example": Path(example.path).stem}
    for name, value in req.computed().items():
        if name == "defense" or value is None:
            continue
        q[name] = repr(value) if isinstance(value, float) else short.get(value, value) if name == "threat" else value
    if run:
        q["run"] = 1
    return "?" + urlencode(q)


@dataclass
class Link:
    """What a link asks for: a whole request (on its defense's defaults), and whether to run it at once."""
    request: RunRequest
    run: bool = False


def parse_link(params, handlers: dict) -> Link | None:
    """The run a page's query parameters describe, checked; None when they name no setting; ``UserError`` with
    one sentence for a link that names something this server does not have. ``handlers``: {defense key:
    DemoHandler}, the first the page's default."""
    params = {OLD_NAMES.get(k, k): str(v) for k, v in dict(params or {}).items()}
    names = set(RunRequest.names()) - {"file"} | {"example"}
    if not names & set(params):
        return None
    key = params.get("defense") or next(iter(handlers))
    if key not in handlers:
        raise UserError(f"This link names the defense {key!r}, which this server does not have "
                        f"({', '.join(handlers)}).")
    h, settings = handlers[key], {n: params[n] for n in RunRequest.names() if n in params and n not in ("file", "defense")}
    if "example" in params:
        ex = next((e for e in h.examples if Path(e.path).stem == params["example"]), None)
        if ex is None:
            raise UserError(f"This link names the example {params['example']!r}, which is not among the "
                            f"{key} examples.")
        settings["file"] = ex.path
    try:
        req = h.request(**settings)
    except UserError as e:
        raise UserError(f"This link's settings cannot be used: {e}.") from None
    return Link(req, params.get("run") == "1" and req.file is not None)
