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
  subscription: 'sub',
  event: 'evt',
  usageSummary: 'usum',
  overageCharge: 'ovg',
  budgetGuard: 'bgd',
  payment: 'pay',
  customer: 'cus',
  invoice: 'inv',
  creditPackage: 'pkg',
  emailAlias: 'eml',
  webhookEvent: 'whe',
  // AI work (issue 6)
  job: 'job',
  backgroundJob: 'bgj',
  project: 'prj',
  conversation: 'cnv',
  agentSession: 'ags',
  message: 'msg',
  toolUsage: 'tlu',
  userRequest: 'urq',
  commit: 'cmt',
  envVar: 'env',
  serviceToken: 'stk',
  serviceConnection: 'scn',
  secretReveal: 'rvl',
} as const;

export type IdKind = keyof typeof ID_PREFIXES;

const ulid = monotonicFactory();

export function newId(kind: IdKind): string {
  return `${ID_PREFIXES[kind]}_${ulid().toLowerCase()}`;
}
