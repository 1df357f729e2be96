import { randomFillSync } from 'node:crypto';
import { monotonicFactory } from 'ulid';
import { must } from './must.js';

/**
 * The one registry of id prefixes. Tally-made ids are `<prefix>_<ulid>`: sortable by creation time
 * and typed by their prefix, so a `txn_` can never be passed where a `usr_` is expected by mistake.
 */
export const ID_PREFIXES = {
  user: 'usr',
  apiKey: 'key',
  session: 'ses',
  emailVerification: 'emv',
  refreshToken: 'rft',
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
  checkout: 'chk',
  // outgoing webhooks (docs/webhooks-out.md)
  webhookEndpoint: 'whep',
  webhookMessage: 'whmsg',
  webhookDelivery: 'whdl',
  // AI work (issue 6)
  job: 'job',
  backgroundJob: 'bgj',
  mail: 'mail',
  passwordReset: 'pwr',
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
  // Storage and project files (issue 15)
  storageObject: 'obj',
  storageReservation: 'rsv',
  storageLink: 'lnk',
  /** A resumable (tus) upload: its id is also the name of the quota reservation it holds. */
  storageUpload: 'tus',
  projectFile: 'pfl',
  projectFileVersion: 'pfv',
  // LLM gateway (issue 14)
  upstream: 'ups',
  // IDE project resources (issue 19; docs/ide.md)
  editorSession: 'eds',
  terminalSession: 'trm',
  codeExecution: 'exe',
  codeAnalysis: 'cna',
  gitRepository: 'grp',
  deployment: 'dep',
} as const;

export type IdKind = keyof typeof ID_PREFIXES;

/**
 * The ulid package asks the CSPRNG for one byte per character (16 calls per new millisecond),
 * which was ~5% of a busy server's CPU. The same CSPRNG bytes, fetched 4 KiB at a time.
 */
const pool = new Uint8Array(4096);
let poolAt = pool.length;
function pooledRandom(): number {
  if (poolAt >= pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  return must(pool[poolAt++], 'the random pool is refilled before it runs out') / 256;
}

const ulid = monotonicFactory(pooledRandom);

export function newId(kind: IdKind): string {
  return `${ID_PREFIXES[kind]}_${ulid().toLowerCase()}`;
}
