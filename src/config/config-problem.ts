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

/**
 * Problems reported for one config, at most: a broken generated file can have a problem per
 * line, and printing (or logging, on every reload) all of them buries the first, which is the one
 * to fix, under megabytes.
 */
export const MAX_PROBLEMS_SHOWN = 100;

/** The first MAX_PROBLEMS_SHOWN problems, then one saying how many more there were. */
export function capProblems(problems: readonly ConfigProblem[]): ConfigProblem[] {
  if (problems.length <= MAX_PROBLEMS_SHOWN) return [...problems];
  const more = problems.length - MAX_PROBLEMS_SHOWN;
  const reason = `and ${more} more problem${more === 1 ? '' : 's'} not shown`;
  return [...problems.slice(0, MAX_PROBLEMS_SHOWN), { file: '', path: '', reason, message: `... ${reason}` }];
}
