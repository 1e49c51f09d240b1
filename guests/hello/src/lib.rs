//! The smallest useful bundle: answers every request with `hello`. It reads no secret;
//! benchmarks use it to measure the host's own per-request cost.

use greentic_guest::http::respond;
use greentic_guest::{Guest, IncomingRequest, ResponseOutparam};

struct Hello;

impl Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        respond(out, 200, "text/plain", b"hello\n");
    }
}

greentic_guest::bindings::export_bot!(Hello);
