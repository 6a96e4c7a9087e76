import { fileURLToPath } from 'node:url';

/** Absolute path of the shepherd script. */
export const SHEPHERD_PATH = fileURLToPath(new URL('./shepherd.mjs', import.meta.url));
