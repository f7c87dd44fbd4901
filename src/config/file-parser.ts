import { isMap, parseDocument, type YAMLMap } from 'yaml';
import { BOTH_RATE_LIMITS, CHECK_FAILED, DESCRIPTOR_KEYS, EMPTY_DOMAIN, EMPTY_KEY, TOP_LEVEL_KEYS } from './config-schema';
import type { FileSetBuilder } from './file-set-builder';
import { DescriptorLevel, DescriptorNode, WildcardPattern } from './rate-limit-config';
import { RateLimitReader, type RuleContext } from './rate-limit-reader';
import { YamlFieldReader } from './yaml-field-reader';
import type { ConfigProblem } from './types';
import { INVALID, YAML_OPTIONS, describeYamlError, isEmpty, type Field } from './yaml-nodes';

/** Validates one file into the shared set, appending problems; never throws on bad input. */
export class FileParser {
  private readonly yaml: YamlFieldReader;
  private readonly rateLimits: RateLimitReader;

  constructor(
    file: string,
    private readonly set: FileSetBuilder,
    private readonly problems: ConfigProblem[],
  ) {
    this.yaml = new YamlFieldReader(file, problems);
    this.rateLimits = new RateLimitReader(this.yaml);
  }

  parse(content: string): void {
    const firstProblem = this.problems.length;
    this.parseContent(content);
    const bound = this.yaml.exhausted;
    if (bound !== undefined) {
      // What was found before the walk stopped is noise next to the one problem to fix.
      this.problems.splice(firstProblem, this.problems.length - firstProblem, bound);
    }
  }

  private parseContent(content: string): void {
    const doc = parseDocument(content, YAML_OPTIONS);
    const syntaxError = doc.errors[0];
    if (syntaxError !== undefined) {
      this.yaml.report('', `error loading config file: ${describeYamlError(syntaxError)}`);
      return;
    }
    this.yaml.doc = doc;
    const root = this.yaml.resolve(doc.contents);
    // An empty or comments-only file has no domain, like the reference's zero-value struct.
    if (isEmpty(root)) {
      this.yaml.report('domain', EMPTY_DOMAIN);
      return;
    }
    if (!isMap(root)) {
      this.yaml.report('', CHECK_FAILED);
      return;
    }
    const fields = this.yaml.readMap(root, '', TOP_LEVEL_KEYS);
    const domain = this.yaml.readString(fields.get('domain'));
    let level: DescriptorLevel | undefined;
    if (domain === undefined || domain === '') {
      this.yaml.report('domain', EMPTY_DOMAIN);
    } else if (domain !== INVALID) {
      level = this.set.claimDomain(domain);
      if (level === undefined) {
        this.yaml.report('domain', `duplicate domain '${domain}' in config file`);
      }
    }
    // A rejected domain still gets its descriptors checked, in a detached tree, so all problems show.
    const domainName = typeof domain === 'string' ? domain : '';
    this.readDescriptors(fields.get('descriptors'), level ?? new DescriptorLevel(), domainName, domainName, new Set());
  }
  private readDescriptors(
    field: Field | undefined,
    level: DescriptorLevel,
    parentId: string,
    domain: string,
    ancestors: Set<YAMLMap>,
  ): void {
    for (const { node, path } of this.yaml.mapItems(field)) {
      if (this.yaml.exhausted !== undefined) return;
      if (ancestors.has(node)) {
        // An alias to an enclosing descriptor would describe an infinitely deep tree.
        this.yaml.report(path, CHECK_FAILED);
      } else {
        ancestors.add(node);
        this.readDescriptor(node, path, level, parentId, domain, ancestors);
        ancestors.delete(node);
      }
    }
  }

  private readDescriptor(
    map: YAMLMap,
    nodePath: string,
    level: DescriptorLevel,
    parentId: string,
    domain: string,
    ancestors: Set<YAMLMap>,
  ): void {
    const fields = this.yaml.readMap(map, nodePath, DESCRIPTOR_KEYS);
    if (this.yaml.exhausted !== undefined) return;
    const key = this.yaml.readString(fields.get('key'));
    const rawValue = this.yaml.readString(fields.get('value'));
    const shadowMode = this.yaml.readBool(fields.get('shadow_mode')) === true;
    const quotaMode = this.yaml.readBool(fields.get('quota_mode')) === true;
    const detailedMetric = this.yaml.readBool(fields.get('detailed_metric')) === true;
    this.yaml.readBool(fields.get('value_to_metric'));
    const shareField = fields.get('share_threshold');
    const shareThreshold = this.yaml.readBool(shareField) === true;
    const metadata = fields.get('metadata');
    if (metadata !== undefined && !isEmpty(metadata.node) && !isMap(metadata.node)) {
      this.yaml.report(metadata.path, CHECK_FAILED);
    }

    if (key === undefined || key === '') {
      this.yaml.report(nodePath, EMPTY_KEY);
    }
    const keyText = typeof key === 'string' ? key : '';
    // An empty value is no value, as in the reference (its finalKey is then just the key).
    const value = typeof rawValue === 'string' && rawValue !== '' ? rawValue : undefined;
    const finalKey = value === undefined ? keyText : `${keyText}_${value}`;
    const id = `${parentId}.${finalKey}`;

    if (shareThreshold && shareField !== undefined && (value === undefined || !WildcardPattern.isPattern(value))) {
      this.yaml.report(
        shareField.path,
        `share_threshold can only be used with wildcard values (containing '*'), but found key '${finalKey}'`,
      );
    }

    const context: RuleContext = { id, domain, shadowMode, quotaMode, detailedMetric };
    const single = fields.get('rate_limit');
    const list = fields.get('rate_limits');
    if (single !== undefined && !isEmpty(single.node) && list !== undefined && !isEmpty(list.node)) {
      this.yaml.report(nodePath, BOTH_RATE_LIMITS);
    }
    const rule = this.rateLimits.readRateLimit(single, context);
    const listed = this.rateLimits.readRateLimits(list, context);
    const rules = rule === undefined ? listed : [rule];
    const node = new DescriptorNode(keyText, value, rules, shareThreshold);
    if (keyText !== '' && !level.add(node)) {
      this.yaml.report(nodePath, `duplicate descriptor composite key '${id}'`);
    }
    for (const each of rules) {
      this.set.addRule(each);
    }
    this.readDescriptors(fields.get('descriptors'), node.children, id, domain, ancestors);
  }
}
