-- Idempotency keyed by operation (issue 16, "one idempotency capability").
--
-- A key's record names the operation it answered ('credits.debit', 'holds.capture',
-- 'POST /v1/users/:id/api-keys', …) instead of an HTTP method and path: the in-process SDK,
-- payments and jobs record money movements under the same keys as the routes without inventing
-- URLs. The request hash of a new record covers the operation, its parameters and its body.
--
-- Records written before this migration keep `method` and `path` and have no operation; their
-- request hash is the old one (method, path and body). They still replay: a request compares its
-- old-style hash with them (src/modules/idempotency/idempotency.legacy.ts). The primary key stays
-- (principal, key): one key is one request, whichever operation it named first.
alter table idempotency_keys add column operation text check (length(operation) between 1 and 200);
alter table idempotency_keys alter column method drop not null;
alter table idempotency_keys alter column path drop not null;
alter table idempotency_keys add constraint idempotency_keys_operation_or_path
  check (operation is not null or (method is not null and path is not null));
