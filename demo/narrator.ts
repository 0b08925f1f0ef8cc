/**
 * How the demo talks to a person: plain lines, a few numbered headings, ✔ and ✘, and colour only
 * when stdout is a terminal (and NO_COLOR is not set).
 */
export class Narrator {
  private section = 0

  constructor(
    private readonly write: (line: string) => Promise<void> | void,
    private readonly color: boolean,
  ) {}

  async heading(title: string, numbered = true): Promise<void> {
    const text = numbered ? `${++this.section}. ${title}` : title
    await this.write('')
    await this.write(this.paint('1', text))
  }

  async say(text: string): Promise<void> {
    await this.write(`  ${text}`)
  }

  async good(text: string): Promise<void> {
    await this.write(`  ${this.paint('32', '✔')} ${text}`)
  }

  /** A fault the demo causes on purpose (a lost message, a killed process). */
  async fault(text: string): Promise<void> {
    await this.write(`  ${this.paint('33', '⚡')} ${text}`)
  }

  async bad(text: string): Promise<void> {
    await this.write(`  ${this.paint('31', '✘')} ${text}`)
  }

  /** Text for a line: dimmed when colours are on. */
  dim(text: string): string {
    return this.paint('2', text)
  }

  /** "✔ equal" or "✘ differs", coloured. */
  verdict(equal: boolean): string {
    return equal ? this.paint('32', '✔ equal') : this.paint('31', '✘ differs')
  }

  async raw(line: string): Promise<void> {
    await this.write(line)
  }

  private paint(code: string, text: string): string {
    return this.color ? `\u001b[${code}m${text}\u001b[0m` : text
  }
}

/** 12345 → "12,345". */
export function n(value: number): string {
  return value.toLocaleString('en-US')
}

/** ms → "1.2 s", or "40 ms" below a second. */
export function secs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`
}
