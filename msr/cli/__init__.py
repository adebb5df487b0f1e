"""The programs of msr (console scripts msr-train, msr-eval, msr-predict, msr-convert, msr-aggregate):
thin entry points that compose a config, build its parts and call them."""
