"""{{bundle_id}}: a gtc bundle in Python (componentize-py).

It answers HTTP on the routes of bundle.toml and reads one secret, `greeting`,
from the bundle's own scope (category `{{bundle_id}}`, the bundle id). It never
echoes the value: a real bot must not either, so the answer only says how long
the value is.

The bindings are generated at build time from the WIT in wit/ (world
`greentic:secrets/bot@1.1.0`) into the module `wit_world`:
- `wit_world.imports.secrets.get(name) -> bytes` returns the value or raises
  `componentize_py_types.Err`, whose `.value` is one of
  `Error_NotFound()`, `Error_Denied()`, `Error_InvalidName(value=why)`,
  `Error_Unavailable()`, `Error_Internal()` (all in `wit_world.imports.secrets`);
- `wit_world.exports.IncomingHandler` is the `wasi:http` handler this module
  implements (a class of that name, with `handle(request, response_out)`);
- `wit_world.imports.types` holds the `wasi:http` request/response resources.
`componentize-py -d wit -w greentic:secrets/bot@1.1.0 bindings out/` writes
them out for an editor.
"""

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import secrets
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

# The secret this bundle reads: declared in bundle.toml's `secrets` list (a `get`
# of an undeclared name is `denied`).
SECRET = "greeting"


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        status, text = answer()
        respond(response_out, status, text)


def answer() -> tuple[int, str]:
    """The status and text for a request: what `get` returned, never the value."""
    try:
        value = secrets.get(SECRET)
    except Err as error:
        # error.value says why there is no value.
        match error.value:
            case secrets.Error_NotFound():
                return 404, f"secret {SECRET!r} not found: seed it (see README.md)\n"
            case secrets.Error_Unavailable():
                # The backend is down and nothing usable is cached: retry later.
                return 503, "secrets are unavailable right now; retry later\n"
            case secrets.Error_Denied():
                return 500, f"secret {SECRET!r} denied: is it in bundle.toml's secrets list?\n"
            case secrets.Error_InvalidName(value=why):
                return 500, f"secret name {SECRET!r} is invalid: {why}\n"
            case _:
                # Error_Internal: the operator's log says what happened.
                return 500, "the host failed to read the secret\n"
    return 200, f"{{bundle_id}}: secret {SECRET!r} is set ({len(value)} bytes)\n"


def respond(response_out: ResponseOutparam, status: int, text: str) -> None:
    """Sends a plain-text response (wasi:http: head first, then the body)."""
    body = text.encode()
    headers = Fields.from_list(
        [("content-type", b"text/plain; charset=utf-8"), ("content-length", str(len(body)).encode())]
    )
    response = OutgoingResponse(headers)
    response.set_status_code(status)
    outgoing = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with outgoing.write() as stream:
        # blocking_write_and_flush takes at most 4096 bytes at a time.
        for start in range(0, len(body), 4096):
            stream.blocking_write_and_flush(body[start : start + 4096])
    OutgoingBody.finish(outgoing, None)
