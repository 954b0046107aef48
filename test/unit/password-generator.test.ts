import t from 'tap';
import {
  DEFAULT_PASSWORD_RULES,
  engineAvoid,
  generatePassword,
  validatePasswordRules,
  type PasswordEngine,
  type PasswordRules,
} from '../../control-plane/rotation/password-generator.js';

const SAMPLES = 200;
const ENGINES: PasswordEngine[] = ['postgres', 'mysql', 'redis', 'mongodb', 'mssql'];

function rules(overrides: Partial<PasswordRules> = {}): PasswordRules {
  return { ...DEFAULT_PASSWORD_RULES, ...overrides };
}

function count(password: string, pattern: RegExp): number {
  return [...password].filter((c) => pattern.test(c)).length;
}

function samples(r: PasswordRules, engine: PasswordEngine = 'postgres'): string[] {
  return Array.from({ length: SAMPLES }, () => generatePassword(r, engine));
}

t.test('password – the default rules give 32 characters on every engine', async (t) => {
  for (const engine of ENGINES) {
    t.equal(generatePassword(DEFAULT_PASSWORD_RULES, engine).length, 32, engine);
  }
});

t.test('password – length is honoured', async (t) => {
  for (const length of [12, 57, 256]) {
    t.equal(generatePassword(rules({ length }), 'postgres').length, length, `length ${length}`);
  }
});

t.test('password – minimum counts are honoured', async (t) => {
  const r = rules({ length: 20, lower: 3, upper: 4, digits: 5, symbols: 6 });
  for (const password of samples(r)) {
    if (count(password, /[a-z]/) < 3 || count(password, /[A-Z]/) < 4 || count(password, /[0-9]/) < 5 || count(password, /[^a-zA-Z0-9]/) < 6) {
      t.fail('a password is short of a minimum');
    }
  }
  t.pass(`${SAMPLES} passwords checked`);
});

t.test('password – avoided characters never appear', async (t) => {
  const avoid = 'aeiouAEIOU01l-_';
  for (const password of samples(rules({ avoid }))) {
    if ([...password].some((c) => avoid.includes(c))) t.fail('an avoided character appeared');
  }
  t.pass(`${SAMPLES} passwords checked`);
});

t.test('password – an excluded class never appears', async (t) => {
  for (const password of samples(rules({ symbols: -1 }))) {
    if (!/^[a-zA-Z0-9]+$/.test(password)) t.fail('a symbol appeared');
  }
  for (const password of samples(rules({ digits: -1, upper: -1 }))) {
    if (/[0-9A-Z]/.test(password)) t.fail('a digit or upper-case letter appeared');
  }
  t.pass('checked');
});

t.test('password – only lower, upper, digits and the default symbols are used', async (t) => {
  for (const password of samples(rules())) {
    if (!/^[a-zA-Z0-9\-._~!*+=]+$/.test(password)) t.fail('an unexpected character appeared');
  }
  t.pass('checked');
});

t.test('password – engine exclusions never appear', async (t) => {
  for (const engine of ENGINES) {
    const banned = engineAvoid(engine);
    if (banned === '') continue;
    for (const password of samples(rules({ symbols: 4 }), engine)) {
      if ([...password].some((c) => banned.includes(c))) t.fail(`${engine}: an excluded character appeared`);
    }
  }
  t.pass('checked');
});

t.test('password – two passwords differ', async (t) => {
  t.not(generatePassword(DEFAULT_PASSWORD_RULES, 'postgres'), generatePassword(DEFAULT_PASSWORD_RULES, 'postgres'));
});

t.test('password – mssql needs three classes with a minimum of 1', async (t) => {
  t.throws(() => validatePasswordRules(rules({ digits: 0, symbols: 0 }), 'mssql'), { code: 'ERR_POLICY_INVALID', message: /mssql needs at least 3/ });
  t.throws(() => validatePasswordRules(rules({ symbols: -1, digits: -1 }), 'mssql'), { code: 'ERR_POLICY_INVALID', message: /mssql/ });
  t.doesNotThrow(() => validatePasswordRules(rules({ symbols: -1 }), 'mssql'), 'three classes suffice');
  t.doesNotThrow(() => validatePasswordRules(rules({ digits: 0, symbols: 0 }), 'postgres'), 'other engines do not need it');
});

t.test('password – invalid rules are refused naming the rule', async (t) => {
  const cases: Array<[string, Partial<PasswordRules>, RegExp]> = [
    ['too short', { length: 11 }, /length/],
    ['too long', { length: 257 }, /length/],
    ['fractional length', { length: 20.5 }, /length/],
    ['count below -1', { lower: -2 }, /lower/],
    ['count above length', { length: 12, digits: 13 }, /digits/],
    ['fractional count', { symbols: 1.5 }, /symbols/],
    ['minimums over length', { length: 12, lower: 4, upper: 4, digits: 4, symbols: 1 }, /minimum counts add up to 13/],
    ['no class allowed', { lower: -1, upper: -1, digits: -1, symbols: -1 }, /at least one/],
    ['required class emptied by avoid', { digits: 2, avoid: '0123456789' }, /digits has no characters left/],
    ['fill alphabet emptied', { lower: -1, upper: -1, symbols: -1, digits: 0, avoid: '0123456789' }, /no characters are left/],
    ['avoid too long', { avoid: 'a'.repeat(129) }, /avoid/],
    ['avoid not printable ASCII', { avoid: 'é' }, /avoid/],
    ['avoid with a control character', { avoid: '\n' }, /avoid/],
  ];
  for (const [name, overrides, message] of cases) {
    t.throws(() => validatePasswordRules(rules(overrides), 'postgres'), { code: 'ERR_POLICY_INVALID', message }, name);
    t.throws(() => generatePassword(rules(overrides), 'postgres'), { code: 'ERR_POLICY_INVALID' }, `${name} (generate)`);
  }
});

t.test('password – symbols removed by the engine can leave the class empty', async (t) => {
  t.throws(() => validatePasswordRules(rules({ avoid: '-._~+' }), 'mssql'), { code: 'ERR_POLICY_INVALID', message: /symbols has no characters left after avoid and the mssql exclusions/ });
  t.doesNotThrow(() => validatePasswordRules(rules({ avoid: '-._~+' }), 'postgres'));
});

t.test('mssql passwords are at most 128 characters (SQL Server\'s limit)', async (t) => {
  const { validatePasswordRules, DEFAULT_PASSWORD_RULES } = await import('../../control-plane/rotation/password-generator.js');
  t.throws(() => validatePasswordRules({ ...DEFAULT_PASSWORD_RULES, length: 129 }, 'mssql'), { code: 'ERR_POLICY_INVALID' });
  t.doesNotThrow(() => validatePasswordRules({ ...DEFAULT_PASSWORD_RULES, length: 128 }, 'mssql'));
  t.doesNotThrow(() => validatePasswordRules({ ...DEFAULT_PASSWORD_RULES, length: 129 }, 'postgres'));
});
