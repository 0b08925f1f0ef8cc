import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Command } from 'commander'
import { formatDuration, parseDuration } from '../../src/cli/duration.js'
import { durationOption } from '../../src/cli/options.js'
import { TidemarkError } from '../../src/errors.js'

describe('durations', () => {
  it('parses units and plain milliseconds', () => {
    const cases: Array<[string, number]> = [
      ['1500', 1500],
      ['250ms', 250],
      ['30s', 30_000],
      ['5m', 300_000],
      ['1h', 3_600_000],
      ['1.5h', 5_400_000],
      ['7d', 604_800_000],
      ['2w', 1_209_600_000],
      [' 7D ', 604_800_000],
      ['7 days', 604_800_000],
      ['2.5 hrs', 9_000_000],
    ]
    for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text)
  })

  it('refuses what is not a duration, saying what is', () => {
    for (const text of ['', '  ', 'soon', '-5m', '1e3', '5m30s', 'h', 'x'.repeat(101)]) {
      assert.throws(
        () => parseDuration(text),
        (error: unknown) =>
          error instanceof TidemarkError && error.code === 'bad-request' && /invalid duration .*e\.g\. 30s, 5m, 7d/.test(error.message),
        text,
      )
    }
    assert.throws(() => parseDuration('99999999999999999999d'), /too long/)
  })

  it('formats with the largest exact unit', () => {
    assert.deepEqual(
      [604_800_000, 86_400_000 * 30, 5_400_000, 90_000, 1500, 1].map(formatDuration),
      ['7d', '30d', '90m', '90s', '1500ms', '1ms'],
    )
  })

  it('shows a duration option\'s default in --help as it is typed, not in milliseconds', () => {
    const command = new Command('x').addOption(durationOption('--wait <duration>', 'how long', 60_000)).addOption(durationOption('--every <duration>', 'how often', 604_800_000))
    const help = command.helpInformation()
    assert.match(help, /how long \(default: 1m\)/)
    assert.match(help, /how often \(default: 7d\)/)
    assert.doesNotMatch(help, /60000|604800000/)
    assert.equal(command.parse(['--wait', '90s'], { from: 'user' }).opts<{ wait: number; every: number }>().wait, 90_000)
    assert.equal(command.opts<{ every: number }>().every, 604_800_000)
  })
})
