import type { Static } from 'typebox';
import type { Executor } from '../../db/database.js';
import type { RowPatch } from '../../db/rows.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import type { SecretBox } from '../../lib/secret-box.js';
import { hintOf } from '../secrets/secrets.js';
import { type CreateGitRepositoryBody, gitCredentialsAad, type UpdateGitRepositoryBody } from './ide.git-repositories.js';
import { type IdeAccess, isUniqueViolation, userOf } from './ide.js';
import { gitCredentialsRead, ideDelete, ideFind, ideInsert, ideList, type IdeListFilter, ideUpdate, type IdeRow } from './ide.repository.js';

const T = 'git_repositories';

/**
 * A project's git repository (one per project). Its credentials are sealed with the server's
 * SecretBox before they reach the database and are never returned; `credentials` opens them for
 * Tally's own sync work.
 */
export class GitRepositoriesService {
  constructor(
    private readonly access: IdeAccess,
    private readonly box: SecretBox,
  ) {}

  private sealed(id: string, credentials: string | null | undefined): Pick<RowPatch<'git_repositories'>, 'credentials_enc' | 'key_id' | 'credentials_hint'> {
    if (credentials === undefined) return {};
    if (credentials === null) return { credentials_enc: null, key_id: null, credentials_hint: null };
    return { credentials_enc: this.box.seal(credentials, gitCredentialsAad(id)), key_id: this.box.keyId, credentials_hint: hintOf(credentials) };
  }

  async create(db: Executor, principal: Principal, projectId: string, body: Static<typeof CreateGitRepositoryBody>): Promise<IdeRow<'git_repositories'>> {
    await this.access.write(db, principal, projectId);
    const id = newId('gitRepository');
    const { credentials, ...fields } = body;
    try {
      return await ideInsert(db, T, { id, project_id: projectId, created_by: userOf(principal), ...fields, ...this.sealed(id, credentials) });
    } catch (err) {
      if (isUniqueViolation(err)) throw errors.conflict('This project already has a git repository; update or delete it', { project_id: projectId });
      throw err;
    }
  }

  async get(db: Executor, principal: Principal, projectId: string, id: string): Promise<IdeRow<'git_repositories'>> {
    await this.access.read(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Git repository', id);
    return row;
  }

  async list(db: Executor, principal: Principal, projectId: string, page: PageRequest, filter: IdeListFilter) {
    await this.access.read(db, principal, projectId);
    return ideList(db, T, projectId, page, filter);
  }

  async update(db: Executor, principal: Principal, projectId: string, id: string, body: Static<typeof UpdateGitRepositoryBody>): Promise<IdeRow<'git_repositories'>> {
    await this.access.write(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Git repository', id);
    const { credentials, ...fields } = body;
    // Credentials were given for one repository: pointed elsewhere (another host, another repo),
    // they would be sent there by the next sync. They go, unless new ones come in the same request.
    const moved = body.repo_url !== undefined && body.repo_url !== row.repo_url;
    const updated = await ideUpdate(db, T, projectId, id, { ...fields, ...this.sealed(id, moved && credentials === undefined ? null : credentials) });
    if (!updated) throw errors.notFound('Git repository', id);
    return updated;
  }

  async remove(db: Executor, principal: Principal, projectId: string, id: string): Promise<void> {
    await this.access.write(db, principal, projectId);
    if (!(await ideDelete(db, T, projectId, id))) throw errors.notFound('Git repository', id);
  }

  /**
   * The clear credentials, for Tally's own sync work (the service's database handle: end users
   * have no grant on the ciphertext). Null when none are stored.
   */
  async credentials(db: Executor, id: string): Promise<string | null> {
    const row = await gitCredentialsRead(db, id);
    if (!row) throw errors.notFound('Git repository', id);
    if (row.credentials_enc === null) return null;
    const plain = this.box.open(row.credentials_enc, gitCredentialsAad(id));
    if (plain === null) throw errors.unavailable('These credentials were sealed with a key this server does not hold (see `tally secrets rotate`)');
    return plain;
  }
}
