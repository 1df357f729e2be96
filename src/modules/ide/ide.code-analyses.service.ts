import type { Static } from 'typebox';
import type { Db, Executor } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import type { CreateCodeAnalysisBody } from './ide.code-analyses.js';
import { type IdeAccess, userOf } from './ide.js';
import { analysesDeleteExpired, ideDelete, ideFind, ideInsert, ideList, type IdeListFilter, type IdeRow } from './ide.repository.js';

const T = 'code_analyses';

/**
 * Code analyses: findings on a file, immutable once written, served until `expires_at`. An expired
 * analysis is gone from reads at once; the scheduler's sweep deletes the rows.
 */
export class CodeAnalysesService {
  constructor(
    private readonly access: IdeAccess,
    private readonly now: () => Date,
  ) {}

  async create(db: Executor, principal: Principal, projectId: string, body: Static<typeof CreateCodeAnalysisBody>): Promise<IdeRow<'code_analyses'>> {
    await this.access.write(db, principal, projectId);
    if (body.expires_at !== undefined && new Date(body.expires_at) <= this.now()) {
      throw errors.invalidRequest('expires_at must be in the future', { field: 'body.expires_at' });
    }
    return ideInsert(db, T, { id: newId('codeAnalysis'), project_id: projectId, created_by: userOf(principal), ...body });
  }

  async get(db: Executor, principal: Principal, projectId: string, id: string): Promise<IdeRow<'code_analyses'>> {
    await this.access.read(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    const expires = row?.['expires_at'] as Date | string | null | undefined;
    if (!row || (expires && new Date(expires) <= this.now())) throw errors.notFound('Code analysis', id);
    return row;
  }

  async list(db: Executor, principal: Principal, projectId: string, page: PageRequest, filter: IdeListFilter) {
    await this.access.read(db, principal, projectId);
    return ideList(db, T, projectId, page, { ...filter, liveAt: this.now() });
  }

  async remove(db: Executor, principal: Principal, projectId: string, id: string): Promise<void> {
    await this.access.write(db, principal, projectId);
    if (!(await ideDelete(db, T, projectId, id))) throw errors.notFound('Code analysis', id);
  }

  /** The scheduler's sweep: deletes every analysis whose expires_at has passed; answers how many. */
  async sweep(db: Db): Promise<number> {
    return analysesDeleteExpired(db, this.now());
  }
}
