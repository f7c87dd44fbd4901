import type { PackageDefinition } from '@grpc/proto-loader';
import { FileDescriptorProto } from 'protobufjs/ext/descriptor';
import type { IDescriptorProto, IFileDescriptorProto } from 'protobufjs/ext/descriptor';

/**
 * Makes proto-loader's file descriptors usable by strict reflection clients (grpcurl, anything
 * built on Go's protodesc or C++'s DescriptorPool). As loaded, they have two defects:
 *
 * 1. No `dependency` list (grpc/grpc-node#2595): the RLS file references HeaderValue,
 *    RateLimitDescriptor, Duration, Struct... in other files without importing them, so a client
 *    cannot link it ("... is not defined").
 * 2. protobufjs names a map's entry type after the field (`Struct.Fields`), where protoc requires
 *    `<Field>Entry` (`Struct.FieldsEntry`); strict pools reject the file ("map_entry should not be
 *    set explicitly"). That hits google.protobuf.Struct (our `dynamic_metadata`) and the health
 *    List response.
 *
 * This relinks them: every type reference resolved to its fully-qualified name, the files it
 * lives in recorded as dependencies, map entries renamed. Checked by loading every reflected file
 * into a C++ DescriptorPool (python3-protobuf); the unit test pins the dependency lists.
 * Startup-only work; the request path never sees it.
 */
export function linkForReflection(definition: PackageDefinition): PackageDefinition {
  const files = decodeFiles(definition);
  const symbols = symbolTable(files);
  for (const file of files) {
    relink(file, symbols);
  }
  const encoded = files.map((file) => Buffer.from(FileDescriptorProto.encode(file).finish()));
  // @grpc/reflection only reads `fileDescriptorProtos`; every entry carries the whole set.
  return Object.fromEntries(
    Object.entries(definition).map(([name, entry]) => [name, { ...entry, fileDescriptorProtos: encoded }]),
  ) as PackageDefinition;
}

function decodeFiles(definition: PackageDefinition): IFileDescriptorProto[] {
  const byName = new Map<string, IFileDescriptorProto>();
  for (const entry of Object.values(definition)) {
    const buffers: unknown = entry.fileDescriptorProtos;
    if (!Array.isArray(buffers)) continue;
    for (const buffer of buffers) {
      if (!(buffer instanceof Uint8Array)) continue;
      const file = FileDescriptorProto.decode(buffer) as IFileDescriptorProto;
      if (file.name !== undefined && !byName.has(file.name)) {
        byName.set(file.name, file);
      }
    }
  }
  return [...byName.values()];
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
      if (reference.startsWith('.') || candidateScope === '') return reference;
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
