import { loadConfig } from './config.js';
import { ConfigError } from './domain/errors.js';
import { createLogger } from './logger.js';
import { dropPrivileges } from './run-as.js';
import { startService } from './roles/start.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`ci_service cannot start: ${error.message}\n`);
    process.exit(1);
  }
  const privileges = dropPrivileges(config.runAs, 'socketPath' in config.docker ? config.docker.socketPath : undefined);
  const logger = createLogger(config.logLevel);
  if (privileges) logger.info(privileges);
  const service = await startService(config, logger);

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    service.stop().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ error: String(error) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((error: unknown) => {
  process.stderr.write(`ci_service failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
