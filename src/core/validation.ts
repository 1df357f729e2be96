import { Ajv, type Options } from 'ajv';
import addFormatsModule from 'ajv-formats';

// ajv-formats is CommonJS; its default export arrives wrapped under ESM.
type AddFormats = (ajv: Ajv, formats: string[]) => Ajv;
const addFormats = ((addFormatsModule as unknown as { default?: AddFormats }).default ??
  addFormatsModule) as unknown as AddFormats;

const base: Options = {
  allErrors: false,
  strict: false,
  useDefaults: true,
  // Unknown fields are an error where the schema says so (additionalProperties: false), never
  // silently dropped: a typo in "amount" must not become a request without an amount.
  removeAdditional: false,
};

/** Bodies are JSON and keep their types: "10" is not 10 where money is concerned. */
export const bodyAjv = new Ajv({ ...base, coerceTypes: false });
/** Query strings, params and headers are text: coerce "50" to 50 there. */
export const textAjv = new Ajv({ ...base, coerceTypes: true });
for (const ajv of [bodyAjv, textAjv]) {
  addFormats(ajv, ['date-time', 'email', 'uri', 'uuid']);
}

const compiled = new WeakMap<object, ReturnType<Ajv['compile']>>();

/**
 * Validates a value against a route body schema exactly as the HTTP layer does (same AJV
 * settings), for callers that skip HTTP: the SDK. Returns the error message or null.
 */
export function validateBody(schema: object, value: unknown): string | null {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = bodyAjv.compile(schema);
    compiled.set(schema, validate);
  }
  if (validate(value)) return null;
  const first = validate.errors?.[0];
  const field = first?.instancePath ? `body${first.instancePath.replace(/\//g, '.')}` : 'body';
  const extra = first?.params && 'additionalProperty' in first.params ? ` (${String(first.params['additionalProperty'])})` : '';
  return `${field} ${first?.message ?? 'is invalid'}${extra}`;
}
