import type { FastifyInstance } from 'fastify';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from './config/config.js';
import type { Database } from './db/database.js';
import { Authenticator } from './http/authenticate.js';
import type { RouteDeps } from './http/route.js';
import { registerApiKeyRoutes } from './modules/api-keys/api-keys.routes.js';
import { ApiKeysService } from './modules/api-keys/api-keys.service.js';
import { registerAuthRoutes } from './modules/auth/auth.routes.js';
import { AuthService } from './modules/auth/auth.service.js';
import { TokenService } from './modules/auth/auth.tokens.js';
import { registerHealthRoutes } from './modules/health/health.routes.js';
import { registerCreditRoutes } from './modules/credits/credits.routes.js';
import { CreditsService } from './modules/credits/credits.service.js';
import { registerIdentityRoutes } from './modules/identities/identities.routes.js';
import { IdentitiesService } from './modules/identities/identities.service.js';
import { registerUserRoutes } from './modules/users/users.routes.js';
import { UsersService } from './modules/users/users.service.js';
import { registerWorkspaceRoutes } from './modules/workspaces/workspaces.routes.js';
import { WorkspacesService } from './modules/workspaces/workspaces.service.js';
import { SecretBox } from './lib/secret-box.js';
import { CreditsSdk } from './sdk/credits.sdk.js';
import { createServer } from './server.js';
import { VERSION } from './version.js';

export interface AppDeps {
  config: Config;
  database: Database;
  logger: FastifyBaseLogger;
  /** The clock every service reads; tests pass a fake one. */
  clock?: () => Date;
}

export interface Services {
  users: UsersService;
  auth: AuthService;
  apiKeys: ApiKeysService;
  workspaces: WorkspacesService;
  tokens: TokenService;
  authenticator: Authenticator;
  secrets: SecretBox;
  credits: CreditsService;
  identities: IdentitiesService;
  /** The typed in-process SDK: same validation, operations and idempotency as the HTTP routes. */
  sdk: { credits: CreditsSdk };
}

export interface App {
  server: FastifyInstance;
  services: Services;
  database: Database;
  config: Config;
}

/** The one composition root: every service is built here, with its dependencies explicit. */
export async function createApp(deps: AppDeps): Promise<App> {
  const { config, database } = deps;
  const clock = deps.clock ?? (() => new Date());
  const tokens = new TokenService(config.auth.jwtSecret, config.auth.jwtTtlSeconds, clock);
  const users = new UsersService();
  const secrets = new SecretBox(config.encryptionKey);
  const credits = new CreditsService(database, config.credits, clock);
  const services: Services = {
    users,
    tokens,
    auth: new AuthService(users, tokens, clock),
    apiKeys: new ApiKeysService(clock),
    workspaces: new WorkspacesService(),
    authenticator: new Authenticator(database.db, config.auth.serviceKey, tokens),
    secrets,
    credits,
    identities: new IdentitiesService(secrets),
    sdk: { credits: new CreditsSdk(credits) },
  };
  // Every user gets an account and the sign-up bonus in the transaction that creates them.
  users.onUserCreated(async (trx, user) => {
    const owner = { userId: user.id };
    await services.credits.openAccount(trx, owner);
    const bonus = services.credits.signupBonusOp(user.id);
    if (bonus) await services.credits.executeIn(trx, owner, [bonus]);
  });

  const server = await createServer({ bodyLimit: config.http.bodyLimit, logger: deps.logger, version: VERSION });
  const routeDeps: RouteDeps = { db: database.db, authenticator: services.authenticator, secrets: services.secrets };
  registerHealthRoutes(server, routeDeps, database);
  registerAuthRoutes(server, routeDeps, services.auth);
  registerUserRoutes(server, routeDeps, services.users);
  registerApiKeyRoutes(server, routeDeps, services.apiKeys);
  registerIdentityRoutes(server, routeDeps, services.identities);
  registerWorkspaceRoutes(server, routeDeps, services.workspaces);
  registerCreditRoutes(server, routeDeps, services.credits, services.workspaces);
  await server.ready();
  return { server, services, database, config };
}
