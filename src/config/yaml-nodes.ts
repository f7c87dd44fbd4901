import { isScalar, type YAMLError } from 'yaml';

/**
 * YAML 1.1 because the reference parses with go-yaml v2: `yes`/`on` are booleans and `<<` merge keys
 * work there, and existing ConfigMaps must load unchanged. Integers as bigint so `10` and `10.0` stay
 * distinguishable (a float `requests_per_unit` is an error) and huge values are range-checked exactly.
 */
export const YAML_OPTIONS = { version: '1.1', intAsBigInt: true, merge: true, uniqueKeys: true, prettyErrors: true } as const;

/** Marks a leaf of the wrong type; the problem is already reported when this is returned. */
export const INVALID: unique symbol = Symbol('invalid');
export type Invalid = typeof INVALID;

/** A value found under an allowed key: the alias-resolved node (null/undefined when empty) and its path. */
export interface Field {
  readonly node: unknown;
  readonly path: string;
}

export function childPath(parent: string, key: string): string {
  return parent === '' ? key : `${parent}.${key}`;
}

export function isEmpty(node: unknown): boolean {
  return node === null || node === undefined || (isScalar(node) && node.value === null);
}

/** How a node is shown in a message: scalars as written, collections in flow style. */
export function describeNode(node: unknown): string {
  if (isEmpty(node)) {
    return isScalar(node) && node.source ? node.source : 'null';
  }
  if (isScalar(node)) {
    return node.source ?? String(node.value);
  }
  return String(node);
}

export function describeYamlError(error: YAMLError): string {
  // With prettyErrors the first line is `<message> at line L, column C:` and a source excerpt follows.
  const firstLine = (error.message.split('\n')[0] ?? '').replace(/:$/, '');
  if (error.code === 'MULTIPLE_DOCS') {
    // The library's text tells the *programmer* to call parseAllDocuments; say what the author must fix.
    const at = firstLine.lastIndexOf(' at line ');
    return `multiple YAML documents in one file are not supported${at >= 0 ? firstLine.slice(at) : ''}`;
  }
  return firstLine;
}
