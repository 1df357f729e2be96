import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import type { FastifySchemaCompiler, FastifySerializerCompiler } from 'fastify';
import { bodyAjv, textAjv } from '../core/validation.js';

/**
 * Route schemas compile on first use instead of at start. Compiling every route's response
 * serializer (fast-json-stringify) and validator (Ajv) up front was ~80% of building the app —
 * about 1.2 s of CPU for every `tally start` and every test file — while a process typically
 * answers a handful of routes. A compiled serializer is kept per schema object, so a second app
 * in the same process (tests, two apps on one database) reuses it; Ajv caches validators per
 * schema object itself.
 *
 * A schema that does not compile is found by `warm()` (the server calls it after listening, and
 * test/schema-compilers.test.ts compiles every route), not only by the first request.
 * Tally registers no shared schemas (`addSchema`), so a serializer depends on its schema alone.
 */

type Validate = ((data: unknown) => boolean) & { errors?: unknown };
type Serialize = (data: unknown) => string;

const buildSerializer = SerializerSelector()({}, {});
const serializers = new WeakMap<object, Serialize>();

function serializerFor(schema: object, method: string, url: string, httpStatus: string | undefined): Serialize {
  let fn = serializers.get(schema);
  if (!fn) {
    fn = buildSerializer({ schema, method, url, httpStatus: httpStatus ?? 'default' }) as Serialize;
    serializers.set(schema, fn);
  }
  return fn;
}

export interface SchemaCompilers {
  validatorCompiler: FastifySchemaCompiler<object>;
  serializerCompiler: FastifySerializerCompiler<object>;
  /** Compiles everything not compiled yet, yielding to the event loop between schemas; rejects on the first schema that does not compile. */
  warm(): Promise<void>;
}

export function schemaCompilers(): SchemaCompilers {
  const pending: Array<() => unknown> = [];

  const validatorCompiler: FastifySchemaCompiler<object> = ({ schema, httpPart }) => {
    const ajv = httpPart === 'body' ? bodyAjv : textAjv;
    let compiled: Validate | undefined;
    const get = (): Validate => (compiled ??= ajv.compile(schema) as Validate);
    pending.push(get);
    // Fastify reads `.errors` from the function it called: copy them from the compiled one.
    const validate: Validate = (data) => {
      const inner = get();
      const ok = inner(data);
      validate.errors = inner.errors;
      return ok;
    };
    return validate as ReturnType<FastifySchemaCompiler<object>>;
  };

  const serializerCompiler: FastifySerializerCompiler<object> = ({ schema, method, url, httpStatus }) => {
    let compiled: Serialize | undefined;
    const get = (): Serialize => (compiled ??= serializerFor(schema, method, url, httpStatus));
    pending.push(get);
    return (data: unknown) => get()(data);
  };

  const warm = async (): Promise<void> => {
    while (pending.length > 0) {
      const batch = pending.splice(0, 16);
      for (const get of batch) get();
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  };

  return { validatorCompiler, serializerCompiler, warm };
}
