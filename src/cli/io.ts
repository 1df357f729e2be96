/**
 * Where a command reads its configuration and writes its output. The `tally` binary passes the
 * process's own (`processIo`); a caller that runs commands in its own process (the test suite's
 * import and export tests, which would otherwise pay a Node start and a PGlite start per command)
 * passes its own environment and collects the output. Commands never touch `process.env`,
 * `process.stdout` or `process.stderr` directly, and return their exit code instead of setting it.
 */
export interface CliIo {
  env: NodeJS.ProcessEnv;
  out(text: string): void;
  err(text: string): void;
  /** Whether stderr is a terminal (progress redraws one line instead of printing a line every few seconds). */
  errIsTTY: boolean;
}

export const processIo: CliIo = {
  env: process.env,
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
  get errIsTTY() {
    return process.stderr.isTTY === true;
  },
};

/** An in-process run's output and exit code. */
export interface CapturedRun {
  code: number;
  out: string;
  err: string;
}

/** An io that keeps what a command prints. */
export function capturingIo(env: NodeJS.ProcessEnv): CliIo & { captured(code: number): CapturedRun } {
  let out = '';
  let err = '';
  return {
    env,
    out: (text) => void (out += text),
    err: (text) => void (err += text),
    errIsTTY: false,
    captured: (code) => ({ code, out, err }),
  };
}
