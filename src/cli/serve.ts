/** `padserve serve`: start the HTTP server (settings: server/config.ts, documented in the README). */
export async function run(argv: string[]): Promise<void> {
  const { serveCommand } = await import('../../server/main.js');
  await serveCommand(argv);
}
