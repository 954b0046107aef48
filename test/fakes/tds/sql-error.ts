/** An error the fake server reports as an ERROR token: a real SQL Server number, severity and message. */
export class SqlError extends Error {
  constructor(readonly number: number, message: string, readonly severity = 16) {
    super(message);
    this.name = 'SqlError';
  }
}
