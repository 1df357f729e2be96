/**
 * The IDE resources' closed unions, declared once: the API schemas, the services and the tests all
 * read these (the migration's check constraints repeat them; test/ide-lifecycles.test.ts proves the
 * database refuses a status outside them). A lifecycle's `next` lists the moves a caller may ask for;
 * a status with no moves is final. Anything else is refused with `invalid_state`, nothing changed.
 */
export interface Lifecycle<S extends string> {
  readonly statuses: readonly S[];
  readonly initial: S;
  readonly next: Readonly<Record<S, readonly S[]>>;
}

const lifecycle = <S extends string>(statuses: readonly S[], initial: S, next: Record<S, readonly S[]>): Lifecycle<S> => ({ statuses, initial, next });

export const EDITOR_STATUSES = ['open', 'closed'] as const;
export type EditorStatus = (typeof EDITOR_STATUSES)[number];
export const editorLifecycle = lifecycle<EditorStatus>(EDITOR_STATUSES, 'open', { open: ['closed'], closed: [] });

export const TERMINAL_STATUSES = ['running', 'exited', 'killed', 'failed'] as const;
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];
export const terminalLifecycle = lifecycle<TerminalStatus>(TERMINAL_STATUSES, 'running', {
  running: ['exited', 'killed', 'failed'],
  exited: [],
  killed: [],
  failed: [],
});

export const EXECUTION_STATUSES = ['queued', 'running', 'completed', 'failed', 'timed_out', 'canceled'] as const;
export type ExecutionStatus = (typeof EXECUTION_STATUSES)[number];
export const executionLifecycle = lifecycle<ExecutionStatus>(EXECUTION_STATUSES, 'queued', {
  queued: ['running', 'failed', 'canceled'],
  running: ['completed', 'failed', 'timed_out', 'canceled'],
  completed: [],
  failed: [],
  timed_out: [],
  canceled: [],
});

/**
 * `superseded` is not a move anyone asks for: it is what the live deployment becomes when a newer
 * one of the same environment succeeds (the same transaction).
 */
export const DEPLOYMENT_STATUSES = ['pending', 'building', 'deploying', 'success', 'failed', 'canceled', 'superseded'] as const;
export type DeploymentStatus = (typeof DEPLOYMENT_STATUSES)[number];
export const deploymentLifecycle = lifecycle<DeploymentStatus>(DEPLOYMENT_STATUSES, 'pending', {
  pending: ['building', 'failed', 'canceled'],
  building: ['deploying', 'failed', 'canceled'],
  deploying: ['success', 'failed', 'canceled'],
  success: [],
  failed: [],
  canceled: [],
  superseded: [],
});
/** In flight: at most one per project and environment (a unique partial index). */
export const DEPLOYMENT_IN_FLIGHT: readonly DeploymentStatus[] = ['pending', 'building', 'deploying'];

export const ENVIRONMENTS = ['development', 'staging', 'production'] as const;
export type Environment = (typeof ENVIRONMENTS)[number];
export const ANALYSIS_TYPES = ['explain', 'complexity', 'security', 'performance'] as const;
export const GIT_PROVIDERS = ['github', 'gitlab', 'bitbucket'] as const;
export const SYNC_STATUSES = ['idle', 'syncing', 'error'] as const;

export const isFinal = <S extends string>(lc: Lifecycle<S>, status: S): boolean => lc.next[status].length === 0;
export const canMove = <S extends string>(lc: Lifecycle<S>, from: S, to: S): boolean => lc.next[from].includes(to);

/** Narrows a stored status to the lifecycle's union (a row outside it is a bug, not input). */
export function statusOf<S extends string>(lc: Lifecycle<S>, stored: string): S {
  const s = lc.statuses.find((x) => x === stored);
  if (s === undefined) throw new Error(`status ${stored} is not in the lifecycle (${lc.statuses.join(', ')})`);
  return s;
}
