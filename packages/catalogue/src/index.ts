// The one home of what the server, the CLI and the Studio panel must agree on: the models and
// which to recommend for a GPU, the presets, and the memory estimate. Pure and browser-safe (the
// panel bundles it): no Node imports, no IO.
export * from './models';
export * from './presets';
export * from './estimate';
export * from './limits';
export * from './describe';
export * from './sweep';
