import { Type } from 'typebox';
import { ERROR_CODES } from '../core/errors.js';

/** The error envelope every non-2xx answer carries. */
export const ErrorResponse = Type.Object(
  {
    error: Type.Object({
      code: Type.Union(ERROR_CODES.map((c) => Type.Literal(c))),
      message: Type.String(),
      request_id: Type.String(),
      details: Type.Optional(Type.Object({}, { additionalProperties: true })),
    }),
  },
  { title: 'Error' },
);
