import type { Db, Executor } from '../../db/database.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import type { EventSink } from '../../core/events.js';
import type { SecretBox } from '../../lib/secret-box.js';
import type { ProjectsService } from '../projects/projects.service.js';
import { CodeAnalysesService } from './ide.code-analyses.service.js';
import { CodeExecutionsService } from './ide.code-executions.service.js';
import { DeploymentsService } from './ide.deployments.service.js';
import { EditorSessionsService } from './ide.editor-sessions.service.js';
import type { ExecutionCharger } from './ide.charger.js';
import { IdeEvents } from './ide.events.js';
import { GitRepositoriesService } from './ide.git-repositories.service.js';
import { IdeAccess } from './ide.js';
import { TerminalSessionsService } from './ide.terminal-sessions.service.js';
import type { IdeListedRow, IdeListFilter, IdeRow, IdeTable } from './ide.repository.js';

/** What the routes need of each resource's service (update is absent where rows are immutable). */
export interface IdeResourceService<T extends IdeTable, C, U> {
  create(db: Executor, principal: Principal, projectId: string, body: C): Promise<IdeRow<T>>;
  get(db: Executor, principal: Principal, projectId: string, id: string): Promise<IdeRow<T>>;
  list(db: Executor, principal: Principal, projectId: string, page: PageRequest, filter: IdeListFilter): Promise<IdeListedRow<T>[]>;
  update?(db: Executor, principal: Principal, projectId: string, id: string, body: U): Promise<IdeRow<T>>;
  remove(db: Executor, principal: Principal, projectId: string, id: string): Promise<void>;
}

/** Seed 002's project resources (docs/ide.md), built once by the composition root. */
export class IdeServices {
  readonly editorSessions: EditorSessionsService;
  readonly terminalSessions: TerminalSessionsService;
  readonly codeExecutions: CodeExecutionsService;
  readonly codeAnalyses: CodeAnalysesService;
  readonly gitRepositories: GitRepositoriesService;
  readonly deployments: DeploymentsService;

  constructor(
    private readonly db: Db,
    projects: ProjectsService,
    box: SecretBox,
    now: () => Date,
    events: EventSink,
    /** Bills finished runs (docs/ide.md, "Billing runs"); null: runs are not billed. */
    charger: ExecutionCharger | null = null,
  ) {
    const access = new IdeAccess(projects);
    const told = new IdeEvents(events);
    this.editorSessions = new EditorSessionsService(access, now);
    this.terminalSessions = new TerminalSessionsService(access, now);
    this.codeExecutions = new CodeExecutionsService(access, now, told, charger);
    // A billed run's charge is its final move: its project is not deleted under it.
    if (charger) projects.guardDelete((db, projectId) => this.codeExecutions.assertNoBilledRunInFlight(db, projectId));
    this.codeAnalyses = new CodeAnalysesService(access, now);
    this.gitRepositories = new GitRepositoriesService(access, box);
    this.deployments = new DeploymentsService(access, now, told);
  }

  /** The scheduler's housekeeping: expired code analyses deleted; answers how many. */
  sweep(): Promise<number> {
    return this.codeAnalyses.sweep(this.db);
  }
}
