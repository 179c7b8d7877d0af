/**
 * Try ci_service without GitHub: serves a local folder as a GitHub repository and prints
 * the signed delivery of its merged pull request, ready for curl.
 *
 *   npm run stand-in -- <folder> [owner/name]
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { mergedPullRequest, signature256 } from './deliveries.js';
import { GitHubStandIn } from './github-stand-in.js';

const folder = path.resolve(process.argv[2] ?? '.');
const fullName = process.argv[3] ?? 'example/sample-app';
const secret = process.env.WEBHOOK_SECRET ?? 'change-me';
const port = Number(process.env.STAND_IN_PORT ?? 0);

const github = await new GitHubStandIn().start(port);
const repository = await github.addRepository(fullName, folder);
const payloadFile = path.resolve('merged-pr.json');
const body = JSON.stringify(mergedPullRequest(repository, repository.sha));
writeFileSync(payloadFile, body);

console.log(`GitHub stand-in at ${github.url}, serving ${folder} as ${fullName} at ${repository.sha}

Start ci_service with:
  GITHUB_API_URL=${github.url} WEBHOOK_SECRET=${secret} REGISTRY=localhost:83 npm start

Then send the merged pull request (payload written to ${payloadFile}):
  curl -i http://localhost:8080/webhook \\
    -H 'content-type: application/json' -H 'x-github-event: pull_request' \\
    -H "x-github-delivery: $(uuidgen 2>/dev/null || date +%s%N)" \\
    -H 'x-hub-signature-256: ${signature256(secret, body)}' \\
    --data-binary @${payloadFile}

Ctrl-C stops the stand-in.`);
process.on('SIGINT', () => void github.close().then(() => process.exit(0)));
