-- The audit seal, once per transaction instead of once per row (issue 20, import speed;
-- docs/audit.md, "Immutable, and tamper-evident").
--
-- 0028 sealed each audit row on its own at commit: a deferred row trigger that locked the chain's
-- head, read the row, hashed it, rewrote it and moved the head — per row. A transaction that wrote
-- a thousand rows (an import batch: a user row and an opening grant a user) moved the head a
-- thousand times, each move a new version of the one head row that the next move had to walk past
-- (~250 µs a row). Now the first of a transaction's deferred firings seals ALL its unsealed rows
-- in the order they were written, in one pass: the head is locked and moved once, the rows are
-- rewritten by one UPDATE; the later firings find their row sealed and return. The chain is the
-- same chain (seq in commit order, then write order; prev_hash, hash = audit_log_digest as in
-- 0028), verified by the same `tally audit verify`. Still at commit only (deferred): concurrent
-- writers queue on the head just for their commit; a rolled-back transaction leaves neither a row
-- nor a gap (its rows, and their place in the queue, go with it).
--
-- Which rows are "this transaction's": two columns filled by default on insert and cleared by the
-- seal, so a sealed row carries neither:
--   sealer — the writing transaction (pg_current_xact_id(): the top-level one, also inside a
--            savepoint), so a row committed unsealed by someone with the triggers off is never
--            sealed by a later transaction (verify keeps reporting it);
--   ord    — the write order within the transaction (a sequence; gaps mean nothing).
-- A partial index holds only unsealed rows: the pending ones of transactions in flight.
alter table audit_log add column sealer xid8, add column ord bigint;
create sequence audit_log_ord_seq cache 100 owned by audit_log.ord;
alter table audit_log alter column sealer set default pg_current_xact_id(),
                      alter column ord set default nextval('audit_log_ord_seq');
create index audit_log_unsealed_idx on audit_log (sealer, ord) where seq is null;

-- Append-only as before; the one update let through is still the seal (from inside the sealing
-- trigger, on a row not sealed yet), which fills seq/prev_hash/hash and clears sealer/ord. The
-- other columns are compared as a row, not as two JSON documents built per row (the seal now
-- updates many rows in one statement, and this trigger runs for each).
create or replace function audit_log_immutable() returns trigger language plpgsql set search_path from current as $$
declare
  kept audit_log;
begin
  if tg_op = 'UPDATE' and pg_trigger_depth() > 1 and old.hash is null and old.seq is null
     and new.seq is not null and new.hash is not null and new.sealer is null and new.ord is null then
    kept := new;
    kept.seq := old.seq;
    kept.prev_hash := old.prev_hash;
    kept.hash := old.hash;
    kept.sealer := old.sealer;
    kept.ord := old.ord;
    if kept is not distinct from old then
      return new;
    end if;
  end if;
  raise exception 'audit_log is append-only: % refused', lower(tg_op) using errcode = '42501';
end $$;

-- The head moves only from inside the seal, forward, onto a sealed row's position and hash (0028
-- allowed one step a move; a transaction's seal now moves it by its row count).
create or replace function audit_chain_guard() returns trigger language plpgsql set search_path from current as $$
begin
  if tg_op = 'UPDATE' and pg_trigger_depth() > 1 and new.last_seq > old.last_seq
     and exists (select 1 from audit_log where seq = new.last_seq and hash = new.last_hash) then
    return new;
  end if;
  raise exception 'audit_chain moves only by sealing audit rows' using errcode = '42501';
end $$;

-- Still a deferred constraint row trigger (0028's `audit_log_seal`, unchanged): fired at commit for
-- each row, it seals the whole transaction on its first call. A row written with a sealer of its
-- own (by hand, not by default) is sealed too, with the rest.
create or replace function audit_log_seal() returns trigger language plpgsql security definer set search_path from current as $$
declare
  me xid8 := pg_current_xact_id();
  head audit_chain;
  r audit_log;
  s bigint;
  h text;
  ids text[] := '{}';
  seqs bigint[] := '{}';
  prevs text[] := '{}';
  hashes text[] := '{}';
begin
  perform from audit_log where id = new.id and seq is null;
  if not found then
    return null; -- sealed by this transaction's first firing
  end if;
  select * into head from audit_chain where id for update;
  s := head.last_seq;
  h := head.last_hash;
  for r in select * from audit_log where seq is null and (sealer = me or id = new.id) order by ord, id loop
    s := s + 1;
    r.seq := s;
    r.prev_hash := h;
    h := audit_log_digest(r);
    ids := ids || r.id;
    seqs := seqs || s;
    prevs := prevs || r.prev_hash;
    hashes := hashes || h;
  end loop;
  update audit_log a set seq = u.seq, prev_hash = u.prev_hash, hash = u.hash, sealer = null, ord = null
    from unnest(ids, seqs, prevs, hashes) as u(id, seq, prev_hash, hash)
    where a.id = u.id;
  update audit_chain set last_seq = s, last_hash = h where id;
  return null;
end $$;
