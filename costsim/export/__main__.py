from costsim.export.cli import main

raise SystemExit(main())
