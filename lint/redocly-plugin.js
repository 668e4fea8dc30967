// Contract rules the built-in Redocly rules do not cover. Each one closes a way for the spec to
// accept or promise something unbounded or undocumented; `npm run lint` fails on any of them.

const typesOf = (schema) => (Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : []);
// A string whose values are enumerated is bounded already (OWASP's string-limit agrees).
const isEnumerated = (schema) => schema.enum !== undefined || schema.const !== undefined;
const isProblemRef = (ref) => /(^|\/)Problem(\.yaml)?$/.test(ref ?? '');
/** `Problem` itself, or a schema of one operation's problems, named `…Problem` (TaskNotFoundProblem, ValidationProblem). */
const isProblemKindRef = (ref) => /(^|\/)[A-Za-z]*Problem(\.yaml)?$/.test(ref ?? '');

/** Every string has `maxLength`, every integer a `minimum` and a `maximum`, every array `maxItems`. */
function boundedSchemas() {
  return {
    Schema(schema, { report, location }) {
      const types = typesOf(schema);
      if (types.includes('string') && schema.maxLength === undefined && !isEnumerated(schema)) {
        report({ message: 'A string schema must declare `maxLength` (or be an `enum`/`const`).', location: location.key() });
      }
      if (types.includes('integer')) {
        if (schema.minimum === undefined && schema.exclusiveMinimum === undefined) {
          report({ message: 'An integer schema must declare `minimum`.', location: location.key() });
        }
        if (schema.maximum === undefined && schema.exclusiveMaximum === undefined) {
          report({ message: 'An integer schema must declare `maximum`.', location: location.key() });
        }
      }
      if (types.includes('array') && schema.maxItems === undefined) {
        report({ message: 'An array schema must declare `maxItems`.', location: location.key() });
      }
    },
  };
}

/** Objects accepted in request bodies say which properties they allow: never `additionalProperties: true`, never left open. */
function closedRequestBodies() {
  return {
    RequestBody: {
      Schema(schema, { report, location }) {
        if (!typesOf(schema).includes('object')) return;
        if (schema.additionalProperties === undefined || schema.additionalProperties === true) {
          report({
            message: 'An object in a request body must set `additionalProperties: false` (or a schema), so unknown fields are rejected.',
            location: location.key(),
          });
        }
      },
    },
  };
}

/** Every operation states its security: the scopes it needs, or `[]` when it is deliberately public. */
function operationSecurityDeclared() {
  return {
    Operation(operation, { report, location }) {
      if (operation.security === undefined) {
        report({ message: 'Operation must declare `security` (`[]` for a public operation).', location: location.key() });
      }
    },
  };
}

/** Every 4xx (and 5xx) response is exactly `application/problem+json` with the shared Problem schema. */
function errorsAreProblems() {
  /**
   * A problem schema is `Problem`, or `allOf` it and a narrowing of its `type` and `status`
   * (`const`/`enum`), so that generated clients can tell one operation's errors apart.
   */
  const extendsProblem = (ref, resolve) => {
    if (isProblemRef(ref)) return true;
    if (!isProblemKindRef(ref)) return false;
    const schema = resolve({ $ref: ref }).node;
    const [base, narrowing] = schema?.allOf ?? [];
    return schema?.allOf?.length === 2 && isProblemRef(base?.$ref) && narrowing?.properties?.status?.const !== undefined && narrowing?.properties?.type !== undefined;
  };
  return {
    Response: {
      skip: (_response, key) => !/^[45]/.test(String(key)),
      enter(response, { report, location, key, resolve }) {
        const types = Object.keys(response.content ?? {});
        const schema = response.content?.['application/problem+json']?.schema;
        const refs = schema?.oneOf ? schema.oneOf.map((s) => s.$ref) : [schema?.$ref];
        if (types.length !== 1 || types[0] !== 'application/problem+json' || !refs.every((ref) => extendsProblem(ref, resolve))) {
          report({
            message: `Response ${key} must have exactly one media type, \`application/problem+json\`, whose schema is a $ref to the Problem schema or to a …Problem schema that is allOf Problem and a const status and type (or a oneOf of those).`,
            location: location.key(),
          });
        }
      },
    },
  };
}

/**
 * Text a client sends is text PostgreSQL can store as sent: every string of a request body or a
 * parameter that is not enumerated or a format (uuid, email, date-time: each rejects them itself)
 * has a `pattern` that refuses U+0000 (which a PostgreSQL text cannot hold) and unpaired UTF-16
 * surrogates (which would be stored as U+FFFD, not as sent). Checked by running the pattern, with
 * Unicode semantics as the validator does, on the schema's example with each such character put in.
 */
function storableText() {
  const poison = ['\u0000', '\ud800', '\udfff', '\ud83d'];
  const check = (schema, report, location) => {
    if (!typesOf(schema).includes('string') || isEnumerated(schema) || (schema.format !== undefined && schema.format !== 'password')) return;
    const example = typeof schema.example === 'string' && schema.example.length > 0 ? schema.example : 'text';
    let pattern;
    try {
      pattern = schema.pattern === undefined ? undefined : new RegExp(schema.pattern, 'u');
    } catch {
      return; // an invalid pattern is no-invalid-schema's to report
    }
    const probes = poison.flatMap((c) => [c, `${example}${c}`, `${example.slice(0, 1)}${c}${example.slice(1)}`]);
    if (pattern === undefined || probes.some((probe) => pattern.test(probe))) {
      report({
        message: 'A string a client sends must have a `pattern` that refuses U+0000 and unpaired surrogates, e.g. ^(?:[^\\u0000\\uD800-\\uDFFF]|[\\uD800-\\uDBFF][\\uDC00-\\uDFFF])*$.',
        location,
      });
    }
  };
  // Redocly calls the visitor for the top schema only: walk its properties, items and
  // combinations, resolving each $ref from the file it is written in, reporting where the string is.
  const walk = (schema, location, ctx, seen) => {
    if (schema === null || typeof schema !== 'object' || seen.has(schema)) return;
    seen.add(schema);
    if (schema.$ref !== undefined) {
      const resolved = ctx.resolve(schema, location.source.absoluteRef);
      if (resolved.location) walk(resolved.node, resolved.location, ctx, seen);
      return;
    }
    check(schema, ctx.report, location.key());
    const children = [
      ...Object.entries(schema.properties ?? {}).map(([name, child]) => [child, ['properties', name]]),
      [schema.items, 'items'],
      [typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined, 'additionalProperties'],
      ...['allOf', 'anyOf', 'oneOf'].flatMap((key) => (schema[key] ?? []).map((child, i) => [child, [key, i]])),
    ];
    for (const [child, path] of children) if (child !== undefined) walk(child, location.child(path), ctx, seen);
  };
  const visit = (schema, ctx) => walk(schema, ctx.location, ctx, new Set());
  return { RequestBody: { Schema: { enter: visit, skip: () => false } }, Parameter: { Schema: visit } };
}

/** Every request and response body and every parameter shows a realistic example (validated by the no-invalid-*-examples rules). */
function examplesEverywhere() {
  const hasExample = (node) => node.example !== undefined || node.examples !== undefined;
  return {
    MediaType(media, { report, location, resolve }) {
      const schema = media.schema ? resolve(media.schema).node : undefined;
      if (!hasExample(media) && !(schema && hasExample(schema))) {
        report({ message: 'Media type must have an example (on the media type or its schema).', location: location.key() });
      }
    },
    Parameter(parameter, { report, location, resolve }) {
      const schema = parameter.schema ? resolve(parameter.schema).node : undefined;
      if (!hasExample(parameter) && !(schema && hasExample(schema))) {
        report({ message: 'Parameter must have an example (on the parameter or its schema).', location: location.key() });
      }
    },
  };
}

export default function tasksApiRules() {
  return {
    id: 'tasks-api',
    rules: {
      oas3: {
        'bounded-schemas': boundedSchemas,
        'closed-request-bodies': closedRequestBodies,
        'operation-security-declared': operationSecurityDeclared,
        'errors-are-problems': errorsAreProblems,
        'examples-everywhere': examplesEverywhere,
        'storable-text': storableText,
      },
    },
  };
}
