import { monotonicFactory } from 'ulid';

/**
 * The one registry of id prefixes. Tally-made ids are `<prefix>_<ulid>`: sortable by creation time
 * and typed by their prefix, so a `txn_` can never be passed where a `usr_` is expected by mistake.
 */
export const ID_PREFIXES = {
  user: 'usr',
  apiKey: 'key',
  session: 'ses',
  identity: 'idn',
  workspace: 'wsp',
  request: 'req',
  transaction: 'txn',
  grant: 'grt',
  hold: 'hold',
} as const;

export type IdKind = keyof typeof ID_PREFIXES;

const ulid = monotonicFactory();

export function newId(kind: IdKind): string {
  return `${ID_PREFIXES[kind]}_${ulid().toLowerCase()}`;
}
