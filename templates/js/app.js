// {{bundle_id}}: a gtc bundle in JavaScript (componentize-js).
//
// It answers HTTP on the routes of bundle.toml and reads one secret, `greeting`,
// from the bundle's own scope (category `{{bundle_id}}`, the bundle id). It never
// echoes the value: a real bot must not either, so the answer only says how long
// the value is.
//
// The bindings come from the WIT in wit/ (world `greentic:secrets/bot@1.1.0`):
// - `get(name)` of 'greentic:secrets/secrets@1.1.0' returns the value as a
//   Uint8Array, or throws an error whose `.payload` is the WIT error variant:
//   `{ tag: 'not-found' }`, `{ tag: 'denied' }`,
//   `{ tag: 'invalid-name', val: why }`, `{ tag: 'unavailable' }`,
//   `{ tag: 'internal' }`;
// - the `wasi:http` handler is the engine's: answer a `fetch` event with a
//   standard `Response`, as in a service worker.
import { get } from 'greentic:secrets/secrets@1.1.0';

// The secret this bundle reads: declared in bundle.toml's `secrets` list (a `get`
// of an undeclared name is `denied`).
const SECRET = 'greeting';

/** The status and text for a request: what `get` returned, never the value. */
function answer() {
  let value;
  try {
    value = get(SECRET);
  } catch (error) {
    // error.payload says why there is no value.
    const reason = error.payload ?? { tag: 'internal' };
    switch (reason.tag) {
      case 'not-found':
        return [404, `secret '${SECRET}' not found: seed it (see README.md)\n`];
      case 'unavailable':
        // The backend is down and nothing usable is cached: retry later.
        return [503, 'secrets are unavailable right now; retry later\n'];
      case 'denied':
        return [500, `secret '${SECRET}' denied: is it in bundle.toml's secrets list?\n`];
      case 'invalid-name':
        return [500, `secret name '${SECRET}' is invalid: ${reason.val}\n`];
      default:
        // 'internal': the operator's log says what happened.
        return [500, 'the host failed to read the secret\n'];
    }
  }
  return [200, `{{bundle_id}}: secret '${SECRET}' is set (${value.length} bytes)\n`];
}

addEventListener('fetch', (event) => {
  const [status, text] = answer();
  event.respondWith(
    new Response(text, { status, headers: { 'content-type': 'text/plain; charset=utf-8' } }),
  );
});
