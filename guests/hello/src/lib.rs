//! The smallest useful bundle: answers every request with `hello`. It reads no secret;
//! benchmarks use it to measure the host's own per-request cost.

use guest_common::{Guest, IncomingRequest, ResponseOutparam, respond};

struct Hello;

impl Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        respond(out, 200, "text/plain", b"hello\n");
    }
}

guest_common::export_bot!(Hello);
