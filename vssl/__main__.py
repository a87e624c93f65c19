from vssl.cli import main

raise SystemExit(main())
