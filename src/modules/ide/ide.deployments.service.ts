import type { Static } from 'typebox';
import type { Executor } from '../../db/database.js';
import type { RowPatch } from '../../db/rows.js';
import { errors } from '../../core/errors.js';
import type { PageRequest } from '../../core/paging.js';
import type { Principal } from '../../core/principal.js';
import { newId } from '../../lib/ids.js';
import { type CreateDeploymentBody, deploymentToApi, type UpdateDeploymentBody } from './ide.deployments.js';
import { type IdeEvents, withoutText } from './ide.events.js';
import { canMove, DEPLOYMENT_IN_FLIGHT, deploymentLifecycle, isFinal, statusOf } from './ide.lifecycles.js';
import { type IdeAccess, isUniqueViolation } from './ide.js';
import { deploymentSupersedeLive, ideDelete, ideFind, ideInsert, ideList, type IdeListFilter, ideUpdate, type IdeRow } from './ide.repository.js';

const T = 'deployments';

/**
 * Deployments of a project per environment. The database holds the rule "one at a time": a unique
 * partial index allows one in flight (pending, building, deploying) per project and environment,
 * so parallel starts cannot both succeed (the loser gets 409 `conflict`); another allows one live
 * (`success`), and a newer success supersedes the live one in the same transaction.
 */
export class DeploymentsService {
  constructor(
    private readonly access: IdeAccess,
    private readonly now: () => Date,
    private readonly events: IdeEvents,
  ) {}

  async create(db: Executor, principal: Principal, projectId: string, body: Static<typeof CreateDeploymentBody>): Promise<IdeRow<'deployments'>> {
    await this.access.write(db, principal, projectId);
    const deployedBy = await this.access.actor(db, principal, projectId, body.user_id);
    const { user_id: _named, ...fields } = body;
    try {
      return await ideInsert(db, T, { id: newId('deployment'), project_id: projectId, status: deploymentLifecycle.initial, deployed_by: deployedBy, ...fields });
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw errors.conflict(`A deployment to ${body.environment} is already in flight; wait for it or cancel it`, { project_id: projectId, environment: body.environment });
      }
      throw err;
    }
  }

  async get(db: Executor, principal: Principal, projectId: string, id: string): Promise<IdeRow<'deployments'>> {
    await this.access.read(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Deployment', id);
    return row;
  }

  async list(db: Executor, principal: Principal, projectId: string, page: PageRequest, filter: IdeListFilter) {
    await this.access.read(db, principal, projectId);
    return ideList(db, T, projectId, page, filter);
  }

  async update(db: Executor, principal: Principal, projectId: string, id: string, body: Static<typeof UpdateDeploymentBody>): Promise<IdeRow<'deployments'>> {
    await this.access.write(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Deployment', id);
    const from = statusOf(deploymentLifecycle, row.status);
    if (isFinal(deploymentLifecycle, from)) throw errors.invalidState(`The deployment is already ${from}`, { id, status: from });
    const to = body.status ?? from;
    if (to !== from && !canMove(deploymentLifecycle, from, to)) throw errors.invalidState(`A deployment cannot move from ${from} to ${to}`, { id, status: from });
    const now = this.now();
    const patch: RowPatch<'deployments'> = { ...body };
    if (to === 'success') {
      await deploymentSupersedeLive(db, projectId, row.environment, id);
      patch.deployed_at = now;
    }
    if (isFinal(deploymentLifecycle, to)) patch.finished_at = now;
    const updated = await ideUpdate(db, T, projectId, id, patch, from);
    if (!updated) throw errors.invalidState('The deployment changed meanwhile; read it again', { id });
    if (to !== from && (to === 'success' || to === 'failed')) {
      await this.events.tell(db, projectId, to === 'success' ? 'deployment.succeeded' : 'deployment.failed', withoutText(deploymentToApi(updated), ['logs']));
    }
    return updated;
  }

  /** Deletes a finished deployment's record; one in flight must be canceled first. */
  async remove(db: Executor, principal: Principal, projectId: string, id: string): Promise<void> {
    await this.access.write(db, principal, projectId);
    const row = await ideFind(db, T, projectId, id);
    if (!row) throw errors.notFound('Deployment', id);
    const status = statusOf(deploymentLifecycle, row.status);
    if (DEPLOYMENT_IN_FLIGHT.includes(status)) throw errors.invalidState('Cancel a deployment in flight before deleting it', { id, status });
    if (!(await ideDelete(db, T, projectId, id))) throw errors.notFound('Deployment', id);
  }
}
