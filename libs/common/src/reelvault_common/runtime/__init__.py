"""What every process needs to run: settings, start-up waits, signals, logging, traces."""
