import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';

/**
 * User JWTs: HS256 with `sub`, `role`, `email` — the claims Supabase Auth issues, so a Supabase
 * project's tokens verify when TALLY_JWT_SECRET is that project's JWT secret.
 */
export interface TokenClaims {
  sub: string;
  role: string;
  email: string | null;
  sessionId: string | null;
}

export type VerifyResult = { ok: true; claims: TokenClaims } | { ok: false; reason: 'expired' | 'invalid' };

export class TokenService {
  private readonly key: Uint8Array;
  constructor(
    secret: string,
    private readonly ttlSeconds: number,
    private readonly now: () => Date,
  ) {
    this.key = new TextEncoder().encode(secret);
  }

  get expiresIn(): number {
    return this.ttlSeconds;
  }

  async issue(user: { id: string; email: string | null }, sessionId: string): Promise<string> {
    const iat = Math.floor(this.now().getTime() / 1000);
    return new SignJWT({ role: 'authenticated', email: user.email ?? undefined, session_id: sessionId, aud: 'authenticated' })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(user.id)
      .setIssuedAt(iat)
      .setExpirationTime(iat + this.ttlSeconds)
      .setIssuer('tally')
      .sign(this.key);
  }

  async verify(token: string): Promise<VerifyResult> {
    try {
      const { payload } = await jwtVerify(token, this.key, {
        algorithms: ['HS256'],
        currentDate: this.now(),
        requiredClaims: ['sub', 'exp'],
      });
      if (typeof payload.sub !== 'string' || payload.sub.length === 0 || payload.sub.length > 128) {
        return { ok: false, reason: 'invalid' };
      }
      const role = typeof payload['role'] === 'string' ? payload['role'] : 'authenticated';
      const email = typeof payload['email'] === 'string' && payload['email'] !== '' ? payload['email'] : null;
      const sessionId = typeof payload['session_id'] === 'string' ? payload['session_id'] : null;
      return { ok: true, claims: { sub: payload.sub, role, email, sessionId } };
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) return { ok: false, reason: 'expired' };
      return { ok: false, reason: 'invalid' };
    }
  }
}
