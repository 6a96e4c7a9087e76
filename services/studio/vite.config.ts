// Studio build: a static single-page app in dist/, served by the Trainyard server at `/`.
// `npm run dev -w @trainyard/studio` serves it with hot reload and proxies /trpc and /api to a running
// server (TRAINYARD_URL, default http://127.0.0.1:8080). The proxy keeps the browser's Host and
// Origin (localhost:5173), so that server must be started with TRAINYARD_ALLOWED_HOSTS=localhost:5173.
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const target = process.env.TRAINYARD_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: true,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: { '/trpc': { target, changeOrigin: false }, '/api': { target, changeOrigin: false } },
  },
});
