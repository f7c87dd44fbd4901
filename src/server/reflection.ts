import { existsSync } from 'node:fs';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { FileDescriptorProto } from 'protobufjs/ext/descriptor';
import type { PackageDefinition } from '@grpc/proto-loader';
import type { IDescriptorProto, IEnumDescriptorProto, IFileDescriptorProto, IFileOptions, IServiceDescriptorProto } from 'protobufjs/ext/descriptor';

/**
 * The files server reflection serves, as any gRPC server built by protoc serves them: one
 * FileDescriptorProto per .proto file under its import path (`envoy/service/ratelimit/v3/rls.proto`,
 * `google/protobuf/duration.proto`), each listing the files it imports.
 *
 * Why not proto-loader's descriptors: proto-loader regroups files by package
 * (`envoy_service_ratelimit_v3.proto`, `google_protobuf.proto`), so a lookup by the real file name
 * is NOT_FOUND, and a client whose pool already holds the standard `google/protobuf/*.proto` files
 * cannot add ours (their messages would be defined twice). It also leaves `dependency` empty
 * (grpc/grpc-node#2595) and names map entries after the field (`Struct.Fields`) where protoc and
 * strict pools require `<Field>Entry`.
 *
 * So the protos are loaded again here with protobufjs (which records, for each definition, the
 * file it was parsed from), grouped back into their files, and relinked: type references fully
 * qualified, dependencies derived from them, map entries renamed. Well-known types come from
 * protobufjs's bundled copies, which carry no file name; they are placed by the
 * `google/protobuf/*.proto` key protobufjs bundles them under and given back their upstream field
 * names and file options, so they equal the standard files. Startup-only work (~20 ms); the
 * request path never sees it.
 */

/** One .proto file to serve, with what it imports. */
export interface ReflectedProto {
  /** The import path (`-I`) the file and its imports are found under. */
  readonly includeDir: string;
  /** Its name relative to `includeDir`. */
  readonly file: string;
  /** The name to serve it under when the package ships it elsewhere than its canonical path. */
  readonly servedAs?: string;
}

/**
 * `definition` as @grpc/reflection reads it: that service only looks at each entry's
 * `fileDescriptorProtos`, so every entry carries the whole set built from `protos`. Services are
 * listed from the files, so include the reflection protos themselves to have them listed.
 */
export function withReflectionFiles(definition: PackageDefinition, protos: readonly ReflectedProto[]): PackageDefinition {
  const encoded = reflectionFileDescriptors(protos);
  return Object.fromEntries(
    Object.entries(definition).map(([name, entry]) => [name, { ...entry, fileDescriptorProtos: encoded }]),
  ) as PackageDefinition;
}

/**
 * What importing protobufjs/ext/descriptor adds to Type, Enum and Service at run time; its
 * typings do not declare it on all three.
 */
interface DescribedByExtension {
  toDescriptor(edition: string): unknown;
}

/** Encoded FileDescriptorProtos of `protos` and of every file they import, transitively. */
export function reflectionFileDescriptors(protos: readonly ReflectedProto[]): Buffer[] {
  const includeDirs = [...new Set(protos.map((p) => p.includeDir))];
  const root = new protobuf.Root();
  root.resolvePath = (origin: string, target: string): string => {
    if (path.isAbsolute(target)) return target;
    const found = includeDirs.map((dir) => path.join(dir, target)).find((candidate) => existsSync(candidate));
    return found ?? protobuf.util.path.resolve(origin, target);
  };
  root.loadSync(
    protos.map((p) => path.join(p.includeDir, p.file)),
    { keepCase: true },
  );
  root.resolveAll();

  const servedName = (absolute: string): string => {
    const proto = protos.find((p) => path.join(p.includeDir, p.file) === absolute);
    if (proto?.servedAs !== undefined) return proto.servedAs;
    for (const dir of includeDirs) {
      const relative = path.relative(dir, absolute);
      if (!relative.startsWith('..') && !path.isAbsolute(relative)) return relative.split(path.sep).join('/');
    }
    throw new Error(`reflection: ${absolute} is under none of the include directories`);
  };
  const bundled = bundledFiles();
  const files = new Map<string, IFileDescriptorProto>();

  const place = (definition: protobuf.ReflectionObject, pkg: string): IFileDescriptorProto => {
    const name =
      definition.filename !== null && definition.filename !== undefined
        ? servedName(definition.filename)
        : bundled.get(definition.fullName.replace(/^\./, ''));
    if (name === undefined) throw new Error(`reflection: no file declares ${definition.fullName}`);
    let file = files.get(name);
    if (file === undefined) {
      // Every file we load (ours, grpc's, the well-known types) is proto3.
      file = { name, package: pkg, syntax: 'proto3', messageType: [], enumType: [], service: [], dependency: [] };
      if (definition.filename === null || definition.filename === undefined) file.options = wellKnownFileOptions(name);
      files.set(name, file);
    }
    if (file.package !== pkg) throw new Error(`reflection: ${name} declares packages ${file.package ?? ''} and ${pkg}`);
    return file;
  };

  const describe = (definition: protobuf.ReflectionObject): unknown =>
    (definition as unknown as DescribedByExtension).toDescriptor('proto3');
  const collect = (namespace: protobuf.NamespaceBase): void => {
    const pkg = namespace.fullName.replace(/^\./, '');
    for (const nested of namespace.nestedArray) {
      if (nested instanceof protobuf.Type) {
        const message = describe(nested) as IDescriptorProto;
        if (nested.filename === null || nested.filename === undefined) snakeCaseFieldNames(message);
        place(nested, pkg).messageType?.push(message);
      } else if (nested instanceof protobuf.Enum) {
        place(nested, pkg).enumType?.push(describe(nested) as IEnumDescriptorProto);
      } else if (nested instanceof protobuf.Service) {
        place(nested, pkg).service?.push(describe(nested) as IServiceDescriptorProto);
      } else if (nested instanceof protobuf.Namespace) {
        collect(nested);
      } else {
        // Package-level extensions: none of our files has one, and serving them needs more care.
        throw new Error(`reflection: ${nested.fullName} is neither a message, an enum, a service nor a package`);
      }
    }
  };
  collect(root);

  const all = [...files.values()];
  const symbols = symbolTable(all);
  for (const file of all) relink(file, symbols);
  // Our own files' options (go_package, java_*) live on protobufjs's package namespace, shared by
  // every file of a package, so they cannot be given back to their file; clients do not need them.
  return all.map((file) => Buffer.from(FileDescriptorProto.encode(file).finish()));
}

/**
 * The file options every upstream `google/protobuf/<name>.proto` declares, in one pattern
 * (`duration` → DurationProto, durationpb). protobufjs's bundle drops them; with them, our copy
 * of a well-known file is the one a client already holds, byte for byte, so even a client that
 * adds every file it is sent (instead of skipping the ones it has) accepts it.
 */
function wellKnownFileOptions(fileName: string): IFileOptions {
  const base = path.posix.basename(fileName, '.proto');
  const camel = base.replace(/(?:^|_)([a-z])/g, (_, c: string) => c.toUpperCase());
  return {
    javaPackage: 'com.google.protobuf',
    javaOuterClassname: `${camel}Proto`,
    javaMultipleFiles: true,
    goPackage: `google.golang.org/protobuf/types/known/${base.replace(/_/g, '')}pb`,
    ccEnableArenas: true,
    objcClassPrefix: 'GPB',
    csharpNamespace: 'Google.Protobuf.WellKnownTypes',
  };
}

/**
 * protobufjs bundles `google.protobuf.Value` with camelCase field names (`nullValue`); the
 * well-known files name every field in snake_case (`null_value`), and a client that already holds
 * them checks ours against its copy.
 */
function snakeCaseFieldNames(message: IDescriptorProto): void {
  for (const field of message.field ?? []) {
    if (field.name) field.name = field.name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  }
  for (const nested of message.nestedType ?? []) snakeCaseFieldNames(nested);
}

/** Fully-qualified name (`google.protobuf.Duration`) → `google/protobuf/duration.proto`, from protobufjs's bundle. */
function bundledFiles(): Map<string, string> {
  const byName = new Map<string, string>();
  // protobufjs keys its bundled well-known files by their import path, next to its own functions.
  const bundle = protobuf.common as unknown as Record<string, unknown>;
  for (const [fileName, json] of Object.entries(bundle)) {
    if (!fileName.endsWith('.proto')) continue;
    const visit = (namespace: unknown, scope: string): void => {
      const nested = (namespace as { nested?: Record<string, unknown> } | undefined)?.nested;
      for (const [name, child] of Object.entries(nested ?? {})) {
        const fullName = scope === '' ? name : `${scope}.${name}`;
        const isDefinition = typeof child === 'object' && child !== null && ('fields' in child || 'values' in child || 'methods' in child);
        if (isDefinition) byName.set(fullName, fileName);
        else visit(child, fullName);
      }
    };
    visit(json, '');
  }
  return byName;
}

/** Fully-qualified type name (leading dot, as descriptors write it) → the file declaring it. */
function symbolTable(files: readonly IFileDescriptorProto[]): Map<string, string> {
  const symbols = new Map<string, string>();
  const addMessage = (fileName: string, scope: string, message: IDescriptorProto): void => {
    const name = `${scope}.${message.name ?? ''}`;
    symbols.set(name, fileName);
    for (const nested of message.nestedType ?? []) addMessage(fileName, name, nested);
    for (const e of message.enumType ?? []) symbols.set(`${name}.${e.name ?? ''}`, fileName);
  };
  for (const file of files) {
    const fileName = file.name ?? '';
    const scope = packageScope(file);
    for (const message of file.messageType ?? []) addMessage(fileName, scope, message);
    for (const e of file.enumType ?? []) symbols.set(`${scope}.${e.name ?? ''}`, fileName);
  }
  return symbols;
}

function packageScope(file: IFileDescriptorProto): string {
  return file.package ? `.${file.package}` : '';
}

/** protoc's name for a map field's entry type: `status_map` → `StatusMapEntry`. */
function mapEntryName(fieldName: string): string {
  return `${fieldName.replace(/(?:^|_)([a-z0-9])/g, (_, c: string) => c.toUpperCase())}Entry`;
}

function relink(file: IFileDescriptorProto, symbols: Map<string, string>): void {
  const fileName = file.name ?? '';
  const dependencies = new Set<string>();

  // Protobuf scoping: a relative name is looked up in the innermost scope first, then outward.
  const resolve = (reference: string, scope: string): string => {
    let candidateScope = scope;
    for (;;) {
      const candidate = reference.startsWith('.') ? reference : `${candidateScope}.${reference}`;
      const declaringFile = symbols.get(candidate);
      if (declaringFile !== undefined) {
        if (declaringFile !== fileName) dependencies.add(declaringFile);
        return candidate;
      }
      if (reference.startsWith('.') || candidateScope === '') {
        throw new Error(`reflection: ${fileName} refers to ${reference}, which no loaded file declares`);
      }
      candidateScope = candidateScope.slice(0, candidateScope.lastIndexOf('.'));
    }
  };

  const visit = (message: IDescriptorProto, scope: string): void => {
    const name = `${scope}.${message.name ?? ''}`;
    for (const nested of message.nestedType ?? []) {
      if (nested.options?.mapEntry !== true) continue;
      const field = (message.field ?? []).find((f) => f.typeName === nested.name || f.typeName === `${name}.${nested.name ?? ''}`);
      if (field?.name === undefined) continue;
      nested.name = mapEntryName(field.name);
      field.typeName = `${name}.${nested.name}`;
      symbols.set(field.typeName, fileName);
    }
    for (const nested of message.nestedType ?? []) visit(nested, name);
    for (const field of message.field ?? []) {
      if (field.typeName) field.typeName = resolve(field.typeName, name);
    }
  };

  const scope = packageScope(file);
  for (const message of file.messageType ?? []) visit(message, scope);
  for (const service of file.service ?? []) {
    for (const method of service.method ?? []) {
      if (method.inputType) method.inputType = resolve(method.inputType, scope);
      if (method.outputType) method.outputType = resolve(method.outputType, scope);
    }
  }
  file.dependency = [...dependencies].sort();
}
