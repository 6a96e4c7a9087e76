// /openapi.json: an OpenAPI 3.1 document of the REST routes, built from the route table and the
// zod schemas the routes validate with, so it cannot drift from what is served (a spec probes
// the running server with it).
import { z } from 'zod';
import type { Route } from './routes';
import {
  createdTask,
  currentModelAnswer,
  detailError,
  gpuInfoAnswer,
  modelEntry,
  statusAnswer,
  studioCreateBody,
  studioTask,
  switchModelAnswer,
  uploadAnswer,
  useAsBackendBody,
} from './shape';

const REQUESTS: Record<string, z.ZodType> = { CreateRequest: studioCreateBody, UseAsBackendRequest: useAsBackendBody };
const ANSWERS: Record<string, z.ZodType> = {
  Task: studioTask,
  CreatedTask: createdTask,
  GpuInfo: gpuInfoAnswer,
  UploadedDataset: uploadAnswer,
  StatusMessage: statusAnswer,
  Model: modelEntry,
  CurrentModel: currentModelAnswer,
  SwitchedModel: switchModelAnswer,
  Error: detailError,
};

const REASONS: Record<number, string> = {
  400: 'Bad input, or the task is not in a state that allows it',
  404: 'No such task (or output folder, or model)',
  405: 'Wrong method',
  409: 'A concurrent change: retry',
  413: 'Body or file too large',
  415: 'Wrong body type',
  500: 'Internal error (the detail gives a correlation id)',
  501: 'Not available in this release',
  503: 'The database is unreachable: retry shortly',
};

/** JSON Schemas of a set of named zod schemas, referring to each other by component. */
function components(named: Record<string, z.ZodType>, io: 'input' | 'output'): Record<string, unknown> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(named)) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, { io, uri: (id) => `#/components/schemas/${id}`, unrepresentable: 'any' });
  return Object.fromEntries(
    Object.entries(schemas).map(([id, s]) => {
      const { $schema: _s, $id: _i, ...rest } = s as Record<string, unknown>;
      return [id, rest];
    }),
  );
}

const ref = (schemas: Record<string, z.ZodType>, schema: z.ZodType) => {
  const id = Object.entries(schemas).find(([, s]) => s === schema)?.[0];
  if (!id) throw new Error('openapi: a route uses a schema that has no component name');
  return { $ref: `#/components/schemas/${id}` };
};

const json = (schema: unknown) => ({ 'application/json': { schema } });

export function openApiDocument(routes: readonly Route[], version: string) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const d = r.doc;
    const parameters = [
      ...[...r.path.matchAll(/\{([a-z_]+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } })),
      ...(d.query ?? []).map((q) => ({
        name: q.name,
        in: 'query',
        required: q.required,
        description: q.description,
        schema: { type: 'string' },
      })),
    ];
    const answer =
      'gzip' in d.answer
        ? { description: d.answer.description, content: { 'application/gzip': { schema: { type: 'string', format: 'binary' } } } }
        : {
            description: d.answer.description,
            content: json(d.answer.list ? { type: 'array', items: ref(ANSWERS, d.answer.schema) } : ref(ANSWERS, d.answer.schema)),
          };
    const responses: Record<string, unknown> = { [String(d.answer.status)]: answer };
    for (const status of [...d.errors, 500, 503])
      responses[String(status)] = { description: REASONS[status] ?? 'Error', content: json({ $ref: '#/components/schemas/Error' }) };
    (paths[r.path] ??= {})[r.method.toLowerCase()] = {
      operationId: `${r.method.toLowerCase()}${r.path.replace(/\{([a-z_]+)\}/g, 'by_$1').replace(/[^A-Za-z0-9]+(.)?/g, (_, c?: string) => (c ?? '').toUpperCase())}`,
      summary: d.summary,
      ...(d.description ? { description: d.description } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(d.body === 'multipart'
        ? {
            requestBody: {
              required: true,
              content: {
                'multipart/form-data': {
                  schema: { type: 'object', required: ['file'], properties: { file: { type: 'string', format: 'binary' } } },
                },
              },
            },
          }
        : d.body
          ? { requestBody: { required: true, content: json(ref(REQUESTS, d.body)) } }
          : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Trainyard REST API (SAGE Studio’s fine-tune contract)',
      version,
      description:
        'The routes SAGE Studio’s fine-tune panel calls, served beside the typed API (/trpc) on the same port. ' +
        'Errors are { "detail": "…" }. Requests from web pages must come from an allowed origin (TRAINYARD_ALLOWED_HOSTS); ' +
        'bodies are JSON, except the upload’s multipart form.',
    },
    paths,
    components: { schemas: { ...components(REQUESTS, 'input'), ...components(ANSWERS, 'output') } },
  };
}
