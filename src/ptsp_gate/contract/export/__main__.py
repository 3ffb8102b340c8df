from ptsp_gate.contract.export.files import main

raise SystemExit(main())
