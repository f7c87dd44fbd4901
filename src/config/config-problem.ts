import type { ConfigProblem } from './types';

export function configProblem(file: string, yamlPath: string, reason: string): ConfigProblem {
  return {
    file,
    path: yamlPath,
    reason,
    message: yamlPath === '' ? `${file}: ${reason}` : `${file}: ${yamlPath}: ${reason}`,
  };
}

/** The error's own message. Not `instanceof Error`: errors from another realm (vm, jest) fail that test. */
export function errorText(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'message' in error && typeof error.message === 'string') {
    return error.message;
  }
  return String(error);
}
