import { isIP } from 'node:net';
import { setAuditActor } from '../../db/request-role.js';
import type { Db } from '../../db/database.js';
import { errors } from '../../core/errors.js';
import { newId } from '../../lib/ids.js';
import type { UserRow } from '../users/users.js';
import { userFindById, userFindCredentials, userTouchLogin } from '../users/users.repository.js';
import type { UsersService } from '../users/users.service.js';
import type { PasswordHasher } from './auth.passwords.js';
import { sessionInsert } from './auth.sessions.repository.js';
import { type RefreshTokens, refreshError } from './auth.refresh.js';
import type { TokenService } from './auth.tokens.js';
import { describeUserAgent } from './auth.user-agent.js';

export interface ClientInfo {
  ip: string | null;
  userAgent: string | undefined;
}

export interface AuthResult {
  user: UserRow;
  accessToken: string;
  expiresIn: number;
  /** Exchanged once at `POST /v1/auth/refresh` for the next pair (docs/auth.md, "Refresh"). */
  refreshToken: string;
}

/** E-mail + password accounts. Passwords are hashed with argon2id; tokens are HS256 JWTs. */
export class AuthService {
  constructor(
    private readonly users: UsersService,
    private readonly tokens: TokenService,
    private readonly refreshTokens: RefreshTokens,
    private readonly passwords: PasswordHasher,
  ) {}

  /** Hashing is slow on purpose, so it runs before the transaction, never inside it. */
  async signup(db: Db, email: string, password: string, client: ClientInfo, requestId?: string): Promise<AuthResult> {
    const passwordHash = await this.passwords.hash(password);
    const user = await db.transaction().execute(async (trx) => {
      // The audit log names the anonymous caller and the request (docs/audit.md), not `system`.
      if (requestId !== undefined) await setAuditActor(trx, { kind: 'anon', id: null }, requestId);
      const row = await this.users.create(trx, {
        email,
        password_hash: passwordHash,
        provider: 'email',
        provider_user_id: email.toLowerCase(),
      });
      await userTouchLogin(trx, row.id);
      return row;
    });
    return this.startSession(db, user, client);
  }

  async login(db: Db, email: string, password: string, client: ClientInfo): Promise<AuthResult> {
    const creds = await userFindCredentials(db, email);
    const valid = creds?.password_hash ? await this.passwords.verify(creds.password_hash, password) : await this.passwords.verifyAgainstDummy(password);
    if (!creds || !valid) throw errors.unauthenticated('Invalid email or password');
    if (!creds.is_active) throw errors.forbidden('This account is disabled');
    await userTouchLogin(db, creds.id);
    const user = await userFindById(db, creds.id);
    if (!user) throw errors.unauthenticated('Invalid email or password');
    return this.startSession(db, user, client);
  }

  /**
   * The next access token and refresh token for a session, in exchange for its current refresh
   * token (rotation; a reuse ends the session). The user is read after the exchange commits, so a
   * changed e-mail address is in the new token.
   */
  async refresh(db: Db, refreshToken: string): Promise<AuthResult> {
    const outcome = await this.refreshTokens.rotate(db, refreshToken);
    if (!outcome.ok) throw refreshError(outcome.reason);
    const user = await userFindById(db, outcome.userId);
    if (!user) throw refreshError('invalid');
    const accessToken = await this.tokens.issue(user, outcome.sessionId);
    return { user, accessToken, expiresIn: this.tokens.expiresIn, refreshToken: outcome.token };
  }

  /** A session lives as long as its newest refresh token; each access token only `expiresIn`. */
  private async startSession(db: Db, user: UserRow, client: ClientInfo): Promise<AuthResult> {
    const sessionId = newId('session');
    const { refreshToken } = await db.transaction().execute(async (trx) => {
      await sessionInsert(trx, {
        id: sessionId,
        user_id: user.id,
        ip_address: client.ip && isIP(client.ip) ? client.ip : null,
        user_agent: client.userAgent?.slice(0, 1024) ?? null,
        ...describeUserAgent(client.userAgent),
        expires_at: this.refreshTokens.expiryFromNow(),
      });
      const { token } = await this.refreshTokens.issue(trx, user.id, sessionId);
      return { refreshToken: token };
    });
    const accessToken = await this.tokens.issue(user, sessionId);
    return { user, accessToken, expiresIn: this.tokens.expiresIn, refreshToken };
  }
}
