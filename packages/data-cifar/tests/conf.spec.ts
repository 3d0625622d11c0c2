import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { cifar10Schema } from '../src/index.js';

describe('conf/dataset/cifar10.yaml', () => {
  it('targets datamodule/cifar10 and lists every key with its schema default', async () => {
    const { _target_, ...body } = parse(
      await readFile(new URL('../conf/dataset/cifar10.yaml', import.meta.url), 'utf8'),
    );
    expect(_target_).toBe('datamodule/cifar10');
    expect(body).toEqual(cifar10Schema.parse({}));
  });
});
