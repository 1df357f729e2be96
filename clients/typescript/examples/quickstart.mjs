// A separate Node process using the client package: `node examples/quickstart.mjs`
// with TALLY_URL and TALLY_SERVICE_KEY set (the README's "From your app").
import { createTally, TallyError, unwrap } from '@tally/client';

const tally = createTally({ baseUrl: process.env.TALLY_URL, token: process.env.TALLY_SERVICE_KEY });

const user = await unwrap(tally.POST('/v1/users', { body: { email: process.env.EMAIL ?? 'ada@example.com' } }));
await unwrap(tally.POST('/v1/credits/grant', { body: { user_id: user.id, amount: 100, reason: 'welcome' } }));
// Every write carries an Idempotency-Key; a retry (the client's own, on 503 or no answer) charges once.
await unwrap(tally.POST('/v1/credits/debit', { body: { user_id: user.id, amount: 30, reason: 'render' } }));
const { balance } = await unwrap(tally.GET('/v1/users/{id}/balance', { params: { path: { id: user.id } } }));

let refused = null;
try {
  await unwrap(tally.POST('/v1/credits/debit', { body: { user_id: user.id, amount: 1_000, reason: 'too much' } }));
} catch (err) {
  if (!TallyError.is(err, 'insufficient_credits')) throw err;
  refused = { status: err.status, code: err.code, details: err.details };
}
console.log(JSON.stringify({ user: user.id, balance, refused }));
