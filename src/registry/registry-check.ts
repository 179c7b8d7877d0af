import axios from 'axios';

/** Answers whether the registry's /v2/ endpoint is up (401 counts: it is up and wants a login). */
export function createRegistryCheck(registryUrl: string, timeoutMs = 2000): () => Promise<void> {
  return async () => {
    const response = await axios.get(`${registryUrl}/v2/`, { timeout: timeoutMs, validateStatus: () => true });
    if (response.status !== 200 && response.status !== 401) {
      throw new Error(`${registryUrl}/v2/ answered ${response.status}`);
    }
  };
}
