/** The ax release (the CLI's `ax version`, the daemon's status). */
export const VERSION = '0.1.0';
